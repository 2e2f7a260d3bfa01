"""`mtp bench train|decode|vllm`: speed and memory targets measured side by side, one JSON line each.

train: peak memory of one step for n in {1,2,4,8} (memory-efficient vs naive, 32k vocab, each
configuration in its own process), step time n=4 vs n=1 against the FLOP-count prediction, our
n=1 throughput vs transformers' LlamaForCausalLM with identical shapes, and achieved training
FLOP/s vs this machine's bf16 matmul peak measured in the same run.
"""
import json
import subprocess
import sys
import time

import torch

from mtp.args import add_config_arg
from mtp.presets import train_flops_per_step

# One size for every train measurement: n up to 8 needs more than 8 layers.
SHAPE = dict(dim=256, n_layers=10, n_attn_heads=4, vocab=32768, seq=256, batch=8)


def _model(n, s):
    from mtp.model import ModelConfig, MTPModel
    torch.manual_seed(0)
    return MTPModel(ModelConfig(vocab_size=s["vocab"], dim=s["dim"], n_layers=s["n_layers"],
                                n_attn_heads=s["n_attn_heads"], n_heads=n))


def _device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE")


def _peak_step_memory(n, mode, s):
    """Bytes a forward+backward step adds on top of the model, its gradients and the batch."""
    import resource
    from mtp.training.step import head_targets, mtp_backward
    dev = _device()
    model = _model(n, s).to(dev)
    w = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + n), device=dev)
    x, ys = head_targets(w, n)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        mtp_backward(model, x, ys, mode, autocast=torch.autocast("cuda", dtype=torch.bfloat16))
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    base = _rss()
    mtp_backward(model, x, ys, mode)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base


def _in_subprocess(fn, *args):
    """Run one measurement in a fresh process, so that peak memory is that configuration's alone."""
    code = f"import json, mtp.bench as b; print(json.dumps(b.{fn}(*{args!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _time_interleaved(steps, repeats=5, warmup=2):
    """Median seconds of each step function, timed in turns (A, B, C, A, B, C, ...: mtp.measure.interleaved)
    so that a change in machine load during the run affects every configuration alike."""
    from mtp.measure import interleaved
    sync = torch.cuda.synchronize if torch.cuda.is_available() else None
    times = interleaved(steps, repeats, warmup=warmup, after=sync)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def _ours_step(n, s, dtype, compile_blocks=False):
    from mtp.training.step import head_targets, mtp_backward
    dev = _device()
    model = _model(n, s).to(dev)
    if compile_blocks:  # as train.compile does
        for block in [*model.trunk, *model.heads]:
            block.compile()
    w = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + n), device=dev)
    x, ys = head_targets(w, n)
    ac = torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32)

    def step():
        mtp_backward(model, x, ys, "memory_efficient", autocast=ac)
        model.zero_grad(set_to_none=True)
    return step


def _hf_step(s, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM
    from mtp.model import ModelConfig
    c = ModelConfig(vocab_size=s["vocab"], dim=s["dim"], n_layers=s["n_layers"], n_attn_heads=s["n_attn_heads"])
    dev = _device()
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.hidden_dim,
                                      num_hidden_layers=c.n_layers, num_attention_heads=c.n_attn_heads,
                                      max_position_embeddings=4096, tie_word_embeddings=False,
                                      attn_implementation="sdpa")).to(dev)
    w = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + 1), device=dev)
    ac = torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32)

    def step():
        with ac:
            loss = hf(input_ids=w[:, :-1], labels=w[:, 1:]).loss  # HF shifts labels itself: pass the same length
        loss.backward()
        hf.zero_grad(set_to_none=True)
    return step


def matmul_peak(dtype, n=2048, seconds=2.0):
    dev = _device()
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(3):
        a @ b
    count, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        a @ b
        count += 1
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * count / (time.perf_counter() - t)


def bench_train(shape=None, steps=5):
    from mtp.training.device import pick_dtype
    s = {**SHAPE, **(shape or {})}
    dtype = pick_dtype({"dtype": "auto"}, _device())
    mem = {f"{mode}_n{n}": _in_subprocess("_peak_step_memory", n, mode, s)
           for mode in ("memory_efficient", "naive") for n in (1, 2, 4, 8)}
    t = _time_interleaved({"n1": _ours_step(1, s, dtype), "n4": _ours_step(4, s, dtype),
                           "hf": _hf_step(s, dtype)}, steps)
    t1, t4, thf = t["n1"], t["n4"], t["hf"]
    peak = matmul_peak(dtype)
    achieved = train_flops_per_step(1, s) / t1
    return {
        "mem_ratio_n8_vs_n1": mem["memory_efficient_n8"] / mem["memory_efficient_n1"],
        "naive_mem_ratio_n8_vs_n1": mem["naive_n8"] / mem["naive_n1"],
        "time_ratio_n4_vs_n1": t4 / t1,
        "flop_ratio_n4_vs_n1": train_flops_per_step(4, s) / train_flops_per_step(1, s),
        "throughput_vs_hf": thf / t1,
        "flops_vs_peak": achieved / peak,
        "achieved_tflops": achieved / 1e12, "peak_matmul_tflops": peak / 1e12,
        "step_s_n1": t1, "step_s_n4": t4, "step_s_hf": thf,
        "peak_step_mem_mb": {k: round(v / 2 ** 20, 1) for k, v in mem.items()},
        "shape": s, "dtype": str(dtype).replace("torch.", ""), "device": str(_device()),
        "torch_threads": torch.get_num_threads(),
    }


def add_arguments(p):
    p.add_argument("what", choices=["train", "decode", "vllm"], help="which benchmark")
    add_config_arg(p)
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration (train)")
    p.add_argument("--shape", type=json.loads, default=None,
                   help='override the train shape, JSON, e.g. \'{"dim": 1024, "n_layers": 18}\'')


def run(args):
    if args.what == "train":
        out = bench_train(args.shape, args.steps)
    else:
        from mtp import config
        cfg = config.load(args.config)
        if args.what == "decode":
            from mtp.decode_stage import bench_study
            out = bench_study(cfg)
        else:
            from mtp.vllm_bench import bench_study
            out = bench_study(cfg)
    print(json.dumps(out))
