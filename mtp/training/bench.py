"""The training benchmark (`mtp bench train`, mtp/stages/bench.py): speed and memory measured side by side.

It measures, per shape (dim, n_layers, n_attn_heads, vocab, seq, batch):
- peak memory one forward+backward step adds, for n in MEM_NS (1, 2, 4, 8; the study's shapes: 1, 2, 4; those
  below the layer count), with the memory-efficient and the naive backward, each configuration in a process of
  its own (the report judges the largest n against n = 1);
- step time at n = TIME_N (4, the paper's Table S5; fewer below 5 layers) vs n = 1 in interleaved rounds
  (mtp.measure.interleaved, one warm-up step each), their per-round ratio with its spread (mtp.measure.ratio),
  against the FLOP-count prediction (mtp.presets.train_flops_per_step). Blocks are not compiled.

`mtp bench train` measures SHAPE (32k vocab) and adds our n=1 throughput vs transformers' LlamaForCausalLM with
identical shapes and achieved training FLOP/s vs this machine's bf16 matmul peak measured in the same run.
`mtp bench train --dataset D --size S --n-heads N --out FILE` (rule bench_training) measures two shapes of the
study: model D/S-nN's (its preset, its dataset's vocabulary, train.seq_len, bench.batch_size sequences, at most
train.batch_size) and the same trunk and tokens at vocab 32768, and writes FILE (<results>/bench/train.json, read
by the report's memory and overhead claims).

Output: {"shapes": [shape_record(...)], "device", "dtype", "torch_threads", "repeats", ...}; each record:
{"label", "shape", "n", "step_s": {"n1": median s, "n<n>": ...}, "time_ratio": mtp.measure.ratio of n<n> over
n1, "flop_ratio", "peak_step_mem_mb": {"<backward>_n<k>": MiB}} (the report's memory claim divides the largest n's
by n=1's: mtp.report.cost.mem_ratios).
"""
import json
import os
import statistics
import subprocess
import sys
import time
import traceback

import torch

from mtp.presets import train_flops_per_step
from mtp.training.step import BACKWARDS

# One size for `mtp bench train`: n up to 8 needs more than 8 layers.
SHAPE = dict(dim=256, n_layers=10, n_attn_heads=4, vocab=32768, seq=256, batch=8)
VOCAB_32K = 32768  # the study's trunk at the paper's vocabulary size
MEM_NS = (1, 2, 4, 8)
STUDY_MEM_NS = (1, 2, 4)  # the study's shapes: n=8 at vocab 32768 would double the benchmark's cost
TIME_N = 4
MMAP_THRESHOLD = 64 * 1024  # bytes: peak_step_memory's malloc setting


def _model(n, s):
    from mtp.nn.model import ModelConfig, MTPModel
    torch.manual_seed(0)
    return MTPModel(ModelConfig(vocab_size=s["vocab"], dim=s["dim"], n_layers=s["n_layers"],
                                n_attn_heads=s["n_attn_heads"], n_kv_heads=s.get("n_kv_heads"), n_heads=n))


def _device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _autocast(dev, dtype):
    return torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32)


def _peak_step_memory(n, mode, s, dtype=None):
    """Bytes a forward+backward step adds on top of the model, its gradients and the batch (dtype: a torch dtype's
    name; None = float32 on CPU, bfloat16 on CUDA). Run it in a fresh process (peak_step_memory)."""
    import resource
    from mtp.training.step import head_targets, mtp_backward
    dev = _device()
    dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    model = _model(n, s).to(dev)
    w = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + n), device=dev)
    x, ys = head_targets(w, n)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        mtp_backward(model, x, ys, mode, autocast=_autocast(dev, dtype))
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    base = _rss()
    mtp_backward(model, x, ys, mode, autocast=_autocast(dev, dtype))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base


def _forked(configs):
    """_peak_step_memory(*c) for each c of `configs`, each in a child forked from this process, which must have
    run no torch operation (a fork after OpenMP threads have started can hang): a fresh process (peak_step_memory).
    A forked child's peak RSS starts at what it shares with this process, below what its model adds."""
    out = []
    for c in configs:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one measurement, its result on the pipe, then exit without cleanup
            os.close(r)
            code = 1
            try:
                os.write(w, json.dumps(_peak_step_memory(*c)).encode())
                code = 0
            except Exception:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r) as f:
            text = f.read()
        _, status = os.waitpid(pid, 0)
        if status:
            raise RuntimeError(f"peak step memory of {c}: the measuring process failed (wait status {status})")
        out.append(json.loads(text))
    return out


def peak_step_memory(shapes, dtype, ns=MEM_NS):
    """Peak memory one step adds (MiB), per shape of `shapes` -> [{"<backward>_n<k>": MiB}], for k in `ns` below
    the shape's layer count. One fresh process forks a child per configuration (_forked: each peak is that
    configuration's alone, without a Python start-up each). Its glibc malloc has a fixed mmap threshold
    (MALLOC_MMAP_THRESHOLD_): every tensor above 64 KiB is a mapping of its own, returned to the system when freed,
    so that the RSS follows the live tensors; with glibc's default, a threshold that rises to the largest block
    freed, one head's freed logits stay in the heap and the memory-efficient step seems to grow with n."""
    keys = [[(k, mode) for mode in BACKWARDS for k in ns if k < s["n_layers"]] for s in shapes]
    name = str(dtype).replace("torch.", "")
    configs = [(k, mode, s, name) for s, ks in zip(shapes, keys) for k, mode in ks]
    code = f"import json, mtp.training.bench as b; print(json.dumps(b._forked({configs!r})))"
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, check=True,
                         env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)})
    values = iter(json.loads(out.stdout.strip().splitlines()[-1]))
    return [{f"{mode}_n{k}": round(next(values) / 2 ** 20, 1) for k, mode in ks} for ks in keys]


def _ours_step(n, s, dtype, compile_blocks=False):
    from mtp.training.step import head_targets, mtp_backward
    dev = _device()
    model = _model(n, s).to(dev)
    if compile_blocks:  # as train.compile does
        for block in [*model.trunk, *model.heads]:
            block.compile()
    w = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + n), device=dev)
    x, ys = head_targets(w, n)
    ac = _autocast(dev, dtype)

    def step():
        mtp_backward(model, x, ys, "memory_efficient", autocast=ac)
        model.zero_grad(set_to_none=True)
    return step


def _hf_step(s, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM
    from mtp.nn.model import ModelConfig
    c = ModelConfig(vocab_size=s["vocab"], dim=s["dim"], n_layers=s["n_layers"], n_attn_heads=s["n_attn_heads"])
    dev = _device()
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.hidden_dim,
                                      num_hidden_layers=c.n_layers, num_attention_heads=c.n_attn_heads,
                                      max_position_embeddings=4096, tie_word_embeddings=False,
                                      attn_implementation="sdpa")).to(dev)
    w = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + 1), device=dev)
    ac = _autocast(dev, dtype)

    def step():
        with ac:
            loss = hf(input_ids=w[:, :-1], labels=w[:, 1:]).loss  # HF shifts labels itself: pass the same length
        loss.backward()
        hf.zero_grad(set_to_none=True)
    return step


def step_times(s, n, dtype, repeats, extra=None):
    """Seconds per round of a memory-efficient step at n=1 and at n heads (and of `extra` {name: step}), timed in
    interleaved rounds (mtp.measure.interleaved) -> {"n1": [...], "n<n>": [...], **extra's}."""
    from mtp.measure import interleaved
    sync = torch.cuda.synchronize if _device().type == "cuda" else None
    steps = {"n1": _ours_step(1, s, dtype), f"n{n}": _ours_step(n, s, dtype), **(extra or {})}
    return interleaved(steps, repeats, warmup=1, after=sync)


def time_n(s):
    """The n timed against n=1: TIME_N, or the most heads the shape's layers allow (n < n_layers)."""
    return min(TIME_N, s["n_layers"] - 1)


def shape_record(label, s, times, mem):
    """One shape's measurements (see the module docstring) from step_times and peak_step_memory."""
    from mtp.measure import ratio
    n = time_n(s)
    r = ratio(times[f"n{n}"], times["n1"])
    return {"label": label, "shape": s, "n": n,
            "step_s": {k: statistics.median(v) for k, v in times.items()},
            "time_ratio": {k: r[k] for k in ("median", "min", "max", "spread", "unstable", "all")},
            "flop_ratio": train_flops_per_step(n, s) / train_flops_per_step(1, s), "peak_step_mem_mb": mem}


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


def _about(dtype, repeats):
    return {"dtype": str(dtype).replace("torch.", ""), "device": str(_device()),
            "torch_threads": torch.get_num_threads(), "repeats": repeats}


def bench_train(shape=None, steps=5):
    """`mtp bench train`: SHAPE (with `shape`'s overrides), plus the HF and matmul-peak comparisons."""
    from mtp.training.device import pick_dtype
    s = {**SHAPE, **(shape or {})}
    dtype = pick_dtype({"dtype": "auto"}, _device())
    mem = peak_step_memory([s], dtype)[0]
    times = step_times(s, time_n(s), dtype, steps, extra={"hf": _hf_step(s, dtype)})
    t1 = statistics.median(times["n1"])
    peak = matmul_peak(dtype)
    achieved = train_flops_per_step(1, s) / t1
    return {"shapes": [shape_record(f"vocab {s['vocab']}", s, times, mem)],
            "throughput_vs_hf": statistics.median(times["hf"]) / t1, "flops_vs_peak": achieved / peak,
            "achieved_tflops": achieved / 1e12, "peak_matmul_tflops": peak / 1e12, **_about(dtype, steps)}


def study_shapes(cfg, entry):
    """[(label, shape)]: model `entry`'s (its preset, its dataset's vocabulary from meta.json, train.seq_len,
    bench.batch_size sequences at most train.batch_size) and the same trunk and tokens at vocab 32768."""
    from mtp import UserError, config, presets
    from mtp.io import read_json
    spec = presets.preset(entry.size, cfg["model_presets"])
    if spec["n_layers"] < 2:
        raise UserError(f"bench train: size '{entry.size}' has {spec['n_layers']} layer; n > 1 heads need 2")
    vocab = read_json(config.data_dir(cfg, entry.dataset) / "meta.json")["vocab_size"]
    tc = entry.train
    s = {k: spec[k] for k in ("dim", "n_layers", "n_attn_heads", "n_kv_heads") if k in spec}
    s.update(seq=tc["seq_len"], batch=min(cfg["bench"]["batch_size"], tc["batch_size"]))
    name = f"{entry.dataset}/{entry.size}"
    return [(name, {**s, "vocab": vocab}), (f"{name} trunk, vocab {VOCAB_32K}", {**s, "vocab": VOCAB_32K})]


def bench_study_train(cfg, entry):
    """`mtp bench train --dataset ... --out`: study_shapes of model `entry`, memory first, then the timings."""
    from mtp.training.device import pick_dtype
    shapes = study_shapes(cfg, entry)
    dtype = pick_dtype(entry.train, _device())
    repeats = cfg["bench"]["repeats"]
    mems = peak_step_memory([s for _, s in shapes], dtype, STUDY_MEM_NS)
    records = [shape_record(label, s, step_times(s, time_n(s), dtype, repeats), mem)
               for (label, s), mem in zip(shapes, mems)]
    return {"shapes": records, "model": entry.name, **_about(dtype, repeats)}

