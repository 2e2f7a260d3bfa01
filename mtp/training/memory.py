"""How much memory training needs and has: the estimate checked before training, the advice printed when it
does not fit (a batch size or a size preset that does), and the peak a run reports."""
import math
import os
import resource
from pathlib import Path

import torch

from mtp import head_types
from mtp.nn.model import ModelConfig, MTPModel
from mtp.presets import PRESETS


def estimate_memory(mcfg, tc, dtype):
    """Rough bytes one training process needs (a floor, not a bound): fp32 weights, gradients and AdamW's two
    moments (16 bytes per parameter, sharded over processes under FSDP), plus per sample the activations kept
    for backward (~14d + 4 x SwiGLU width per token and block; only each block's input under activation
    checkpointing) and the logits of the heads alive at once (3 copies of T x V floats)."""
    with torch.device("meta"):
        params = sum(p.numel() for p in MTPModel(mcfg).parameters())
    act = 4 if dtype == torch.float32 else 2
    live = mcfg.n_heads if tc["backward"] == "naive" else 1  # memory-efficient: one head at a time
    block = (14 * mcfg.dim + 4 * mcfg.hidden_dim) * act
    trunk = (mcfg.n_trunk * mcfg.dim * act + block) if tc.get("activation_checkpointing") else mcfg.n_trunk * block
    heads = live * block if head_types.get(mcfg.head_type).attends else 0
    per_sample = tc["seq_len"] * (trunk + heads + live * 3 * mcfg.vocab_size * 4)
    world = int(os.environ.get("WORLD_SIZE", 1))
    fsdp = world > 1 and (tc.get("parallel") == "fsdp" or
                          (tc.get("parallel", "auto") == "auto" and params >= tc.get("fsdp_min_params", math.inf)))
    fixed = (16 * params + (2 * params if act == 2 else 0)) // (world if fsdp else 1)  # + bf16 copies under autocast
    return {"params": params, "fixed": fixed, "per_sample": per_sample, "total": fixed + tc["batch_size"] * per_sample}


def available_memory(device):
    """Bytes this process may still use: the GPU's free memory, else available RAM (capped by a cgroup limit)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil
    free = psutil.virtual_memory().available
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            free = min(free, int(Path(limit).read_text()) - int(Path(usage).read_text()))
        except (OSError, ValueError):  # no such cgroup file, or "max"
            pass
    return free


def memory_advice(mcfg, tc, dtype, device, size):
    """(estimated bytes, available bytes, one-line explanation with a batch size or preset that fits)."""
    gib = lambda b: f"{b / 2 ** 30:.1f} GiB"
    est = estimate_memory(mcfg, tc, dtype)
    procs = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if device.type == "cpu" else 1  # torchrun on one machine
    free = available_memory(device)
    B = tc["batch_size"]
    text = (f"training size '{size}' ({est['params'] / 1e6:.1f}M parameters) with train.batch_size {B} x seq_len "
            f"{tc['seq_len']} needs about {gib(est['total'] * procs)} ({gib(est['fixed'])} weights, gradients and AdamW "
            f"state, {gib(B * est['per_sample'])} activations{f', x {procs} processes' if procs > 1 else ''}); "
            f"{device} has {gib(free)} available")
    fit = int((free / procs - est["fixed"]) // est["per_sample"])
    if fit >= 1:
        b = min(fit, max(1, B // 2))  # the estimate is a floor: after a real out-of-memory, at least halve
        text += f"; use train.batch_size {b} with train.grad_accum {math.ceil(B * tc['grad_accum'] / b)} (about the same tokens per step)"
    else:
        fits = [name for name, spec in sorted(PRESETS.items(), key=lambda kv: -kv[1]["dim"] ** 2 * kv[1]["n_layers"])
                if mcfg.n_heads < spec["n_layers"] and estimate_memory(
                    ModelConfig(vocab_size=mcfg.vocab_size, n_heads=mcfg.n_heads, head_type=mcfg.head_type, **spec),
                    {**tc, "batch_size": 1}, dtype)["total"] * procs <= free]
        text += (f"; even train.batch_size 1 does not fit: use a smaller size preset"
                 f"{f' (the largest that fits: {fits[0]})' if fits else ''} or a machine with more memory")
    return est["total"] * procs, free, text


def is_out_of_memory(e):
    return isinstance(e, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(e, RuntimeError) and any(s in str(e) for s in ("out of memory", "can't allocate memory",
                                                                  "DefaultCPUAllocator: can't allocate")))


def peak_mem_bytes(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
