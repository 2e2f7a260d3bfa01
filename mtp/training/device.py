"""The device and dtype a train config asks for, and the autocast context that goes with them."""
import os
from pathlib import Path

import torch

from mtp import UserError


def pick_device(tc):
    if tc["device"] != "auto":
        try:
            device = torch.device(tc["device"])
        except RuntimeError:
            raise UserError(f"train.device: '{tc['device']}' is not a torch device; use auto, cpu, cuda or cuda:<i>") from None
        if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
            raise UserError(f"train.device: '{tc['device']}' but this machine has {torch.cuda.device_count()} usable "
                            f"CUDA GPU(s); use auto or cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def pick_dtype(tc, device):
    """auto: bf16 autocast on CUDA; on CPU bf16 where the CPU has native bf16 matmuls (AMX or
    AVX512-BF16: 2-3x the fp32 matmul rate, see benchmarks/RESULTS.md), else float32."""
    if tc["dtype"] != "auto":
        return getattr(torch, tc["dtype"])
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if _cpu_has_fast_bf16() else torch.float32


def _cpu_has_fast_bf16():
    try:
        flags = Path("/proc/cpuinfo").read_text()
        return "amx_bf16" in flags or "avx512_bf16" in flags
    except OSError:
        return False


def autocast_for(device, dtype):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
