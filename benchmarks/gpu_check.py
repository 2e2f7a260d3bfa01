"""One prepared GPU check (run by benchmarks/gpu_check.sh on a lent H100): environment, bf16 training
step and MFU of a ~0.3B model, peak memory vs n (memory-efficient vs naive), native self-speculative
decoding speed-up of a freshly trained small model. Prints JSON lines; `--smoke` runs tiny shapes on CPU.
Needs only torch, numpy, tokenizers, transformers, tqdm (no mlflow, datasets or vLLM: not on that machine).
"""
import argparse
import json
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch

from mtp.training import bench
from mtp.decoding import timing as decode_timing
from mtp.nn.model import ModelConfig, MTPModel
from mtp.training.step import head_targets, mtp_backward

H100_BF16_DENSE = 989e12  # NVIDIA's H100 SXM dense bf16 tensor-core peak


def emit(name, obj):
    print(json.dumps({"check": name, **obj}), flush=True)


def env():
    d = torch.cuda.get_device_properties(0) if torch.cuda.is_available() else None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
            "gpu": d.name if d else None, "gpu_mem_gib": round(d.total_memory / 2 ** 30, 1) if d else None,
            "sms": d.multi_processor_count if d else None}


def mfu(shape, steps, compile_):
    dev = bench._device()
    dt = torch.bfloat16
    fns = {"n1": bench._ours_step(1, shape, dt), "n4": bench._ours_step(4, shape, dt), "hf": bench._hf_step(shape, dt)}
    t = bench._time_interleaved(fns, steps)
    out = {"shape": shape, "step_s": t, "tokens_per_step": shape["batch"] * shape["seq"]}
    peak = bench.matmul_peak(dt, n=8192 if dev.type == "cuda" else 1024)
    for n in (1, 4):
        flops = bench.train_flops_per_step(n, shape) / t[f"n{n}"]
        out[f"tflops_n{n}"] = flops / 1e12
        out[f"mfu_n{n}_vs_spec"] = flops / H100_BF16_DENSE
        out[f"mfu_n{n}_vs_measured_peak"] = flops / peak
    out["measured_matmul_peak_tflops"] = peak / 1e12
    out["time_ratio_n4_vs_n1"] = t["n4"] / t["n1"]
    out["flop_ratio_n4_vs_n1"] = bench.train_flops_per_step(4, shape) / bench.train_flops_per_step(1, shape)
    out["throughput_vs_hf"] = t["hf"] / t["n1"]
    if compile_:
        eager = bench._ours_step(1, shape, dt)
        compiled = bench._ours_step(1, shape, dt, compile_blocks=True)
        t0 = time.perf_counter()
        compiled()
        out["compile_s"] = time.perf_counter() - t0
        tc = bench._time_interleaved({"compiled": compiled, "eager": eager}, steps)
        out["compiled_step_s"] = tc["compiled"]
        out["mfu_n1_compiled_vs_spec"] = bench.train_flops_per_step(1, shape) / tc["compiled"] / H100_BF16_DENSE
    return out


def memory(shape):
    return {f"{mode}_n{n}_mb": round(bench._in_subprocess("_peak_step_memory", n, mode, shape) / 2 ** 20, 1)
            for mode in ("memory_efficient", "naive") for n in (1, 2, 4, 8)}


def byte_corpus(limit_bytes):
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks, total = [], 0
    for p in sorted(root.rglob("*.py")):
        b = p.read_bytes() + b"\x00"
        chunks.append(np.frombuffer(b, dtype=np.uint8))
        total += len(b)
        if total > limit_bytes:
            break
    return torch.from_numpy(np.concatenate(chunks).astype(np.int64))


def spec_decode(steps, dim, layers, n, seq, batch, new_tokens):
    """Train a byte-level n-head model on the stdlib for `steps`, then time greedy AR vs self-speculative."""
    dev = bench._device()
    data = byte_corpus(40_000_000 if dev.type == "cuda" else 2_000_000)
    split = int(len(data) * 0.98)
    train, val = data[:split], data[split:]
    torch.manual_seed(0)
    model = MTPModel(ModelConfig(vocab_size=256, dim=dim, n_layers=layers, n_attn_heads=max(1, dim // 64),
                                 n_heads=n)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1)
    ac = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for step in range(steps):
        for grp in opt.param_groups:
            grp["lr"] = 2e-3 * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * (1 - step / steps))
        starts = torch.randint(0, len(train) - seq - n, (batch,), generator=g)
        w = torch.stack([train[s:s + seq + n] for s in starts]).to(dev)
        x, ys = head_targets(w, n)
        losses = mtp_backward(model, x, ys, autocast=ac)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    train_s = time.perf_counter() - t0
    model.eval()
    prompts = [val[i * 1000:i * 1000 + 128].tolist() for i in range(16)]
    r = decode_timing.bench(model, prompts, [1, 8], new_tokens, 3)
    return {"train_steps": steps, "train_s": train_s, "final_loss_head_1": float(losses[0]),
            "model": {"dim": dim, "layers": layers, "n": n},
            "per_batch": [{k: row[k] for k in ("batch_size", "speedup", "tokens_per_forward", "lossless")}
                          for row in r["per_batch"]]}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny shapes, CPU: check the script itself runs")
    a = p.parse_args()
    emit("env", env())
    if a.smoke:
        shape = dict(dim=64, n_layers=9, n_attn_heads=2, vocab=1024, seq=64, batch=2)
        emit("train_step_mfu", mfu(shape, 2, compile_=False))
        emit("peak_memory_vs_n", memory(shape))
        emit("spec_decode", spec_decode(20, 64, 6, 4, 64, 8, 16))
        return
    shape = dict(dim=1024, n_layers=18, n_attn_heads=8, vocab=32768, seq=2048, batch=8)  # the paper's 0.3B
    emit("train_step_mfu", mfu(shape, 5, compile_=True))
    emit("peak_memory_vs_n", memory(shape))
    emit("spec_decode", spec_decode(1500, 512, 8, 4, 512, 64, 256))


if __name__ == "__main__":
    main()
