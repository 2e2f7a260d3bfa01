"""The train stage: one model of the n x size sweep, memory-efficient multi-head backward.

Memory-efficient step (paper Section 2 / Fig. 2): forward the trunk once, detach z, then
for each head in turn forward + backward (accumulating dL/dz, freeing that head's logits),
finally backprop dL/dz through the trunk. Peak memory O(V + d) instead of O(nV + d);
the gradients are those of the plain sum of head losses (`backward: naive`).

Data: at step s the global batch is a fixed function of (seed, s), so a resumed run, or
a run on another number of processes, sees exactly the same windows. Under torchrun each
process takes its slice and gradients are summed with all_reduce (data parallel).
"""
import math
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mtp import UserError, checkpoint
from mtp.cli import add_config_arg, add_model_args
from mtp.io import write_json
from mtp.model import ModelConfig, MTPModel


# ---------------------------------------------------------------- the step

def head_targets(w, n):
    """Windows w (B, T+n) -> input (B, T) and n targets (B, T); head i+1 predicts w[t+i+1]."""
    T = w.shape[1] - n
    return w[:, :T], [w[:, i + 1:i + 1 + T] for i in range(n)]


def mtp_backward(model, x, ys, mode="memory_efficient", scale=1.0, autocast=None):
    """Forward + backward of the summed head losses on one micro-batch; returns each head's loss (detached)."""
    B, T = x.shape
    ctx = autocast or torch.autocast(x.device.type, enabled=False)
    cos, sin = model.rope(T, device=x.device)
    with ctx:
        z = model.forward_trunk(x, cos, sin)  # (B, T, C)
    if mode == "naive":
        with ctx:
            losses = [F.cross_entropy(model.forward_head(i, z, cos, sin).float().flatten(0, 1), y.flatten())
                      for i, y in enumerate(ys)]
        (sum(losses) * scale).backward()
        return [l.detach() for l in losses]
    zd = z.detach().requires_grad_(True)
    losses = []
    for i, y in enumerate(ys):
        with ctx:
            logits = model.forward_head(i, zd, cos, sin)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        (loss * scale).backward()  # accumulates dL/dz in zd.grad; frees this head's logits
        losses.append(loss.detach())
        del logits, loss
    z.backward(zd.grad)
    return losses


def lr_at(step, tc, total):
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    if step < tc["warmup_steps"]:
        return tc["lr"] * (step + 1) / tc["warmup_steps"]
    frac = (step - tc["warmup_steps"]) / max(1, total - tc["warmup_steps"])
    return tc["lr"] * (tc["min_lr_ratio"] + (1 - tc["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def make_optimizer(model, tc):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": tc["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}], lr=tc["lr"], betas=(0.9, 0.95),
                             fused=False)


def global_starts(seed, step, count, n_tokens, length):
    """Start offsets of the `count` windows of step `step`: a pure function of (seed, step)."""
    if n_tokens <= length:
        raise UserError(f"the train split has {n_tokens} tokens, fewer than one window of {length}; "
                        f"use a larger corpus or a smaller train.seq_len")
    return np.random.default_rng([seed, step]).integers(0, n_tokens - length, size=count)


# ---------------------------------------------------------------- set-up

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


class Dist:
    """Data parallelism under torchrun (NCCL on GPUs, gloo on CPU); a no-op otherwise.

    DDP: every process holds the whole model; gradients are summed with one all_reduce per step
    (not torch's DDP wrapper, whose hooks expect one backward per forward: the memory-efficient
    step runs n + 1 backward passes). FSDP2 (`fully_shard` per block and per shared layer) for
    models of at least train.fsdp_min_params parameters, or when train.parallel is fsdp; its
    reduce-scatter averages gradients over processes.
    """

    def __init__(self, device):
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.fsdp = False
        if self.world > 1:
            import torch.distributed as dist
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.dist = dist

    def wrap(self, model, tc, device):
        n_params = sum(p.numel() for p in model.parameters())
        self.fsdp = self.world > 1 and (tc["parallel"] == "fsdp" or
                                        (tc["parallel"] == "auto" and n_params >= tc["fsdp_min_params"]))
        if self.fsdp:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard
            mesh = init_device_mesh(device.type, (self.world,))
            # Each block and shared layer is its own FSDP unit (and root): the memory-efficient step calls
            # them one by one, never the model's forward, so the model itself is not wrapped.
            for module in [*model.trunk, *model.heads, model.tok_emb, model.norm, model.lm_head]:
                fully_shard(module, mesh=mesh)
        return model

    def loss_scale(self, grad_accum):
        return 1.0 / grad_accum if self.fsdp else 1.0 / (grad_accum * self.world)

    def all_reduce_grads(self, model):
        if self.world == 1 or self.fsdp:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        flat = torch.cat([g.flatten() for g in grads])
        self.dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean(self, t):
        if self.world > 1:
            self.dist.all_reduce(t)
            t /= self.world
        return t

    def close(self):
        if self.world > 1:
            self.dist.destroy_process_group()


def total_steps(tc, world):
    if tc["tokens"]:
        per_step = tc["batch_size"] * tc["grad_accum"] * world * tc["seq_len"]
        return max(1, math.ceil(tc["tokens"] / per_step))
    return tc["max_steps"]


def peak_mem_bytes(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@torch.no_grad()
def evaluate(model, val, tc, n, device, autocast):
    """Mean validation loss per head on fixed, evenly spaced windows of the val split."""
    model.eval()
    length = tc["seq_len"] + n
    count = tc["eval_batches"] * tc["batch_size"]
    if len(val.tokens) <= length:
        raise UserError(f"the val split has {len(val.tokens)} tokens, fewer than one window of {length}; "
                        f"raise val_fraction or lower train.seq_len")
    starts = np.linspace(0, len(val.tokens) - length - 1, count).astype(np.int64)
    sums = torch.zeros(n)
    for i in range(0, count, tc["batch_size"]):
        w = torch.from_numpy(val.windows(starts[i:i + tc["batch_size"]], length)).to(device)
        x, ys = head_targets(w, n)
        with autocast:
            logits = model(x)
        sums += torch.stack([F.cross_entropy(lg.float().flatten(0, 1), y.flatten()).cpu() for lg, y in zip(logits, ys)])
    model.train()
    return (sums / tc["eval_batches"]).tolist()


# ---------------------------------------------------------------- memory

def estimate_memory(mcfg, tc, dtype):
    """Rough bytes one training process needs (a floor, not a bound): fp32 weights, gradients and AdamW's two
    moments (16 bytes per parameter, sharded over processes under FSDP), plus per sample the activations kept
    for backward (~14d + 4 x SwiGLU width per token and block; only each block's input under activation
    checkpointing) and the logits of the heads alive at once (3 copies of T x V floats)."""
    with torch.device("meta"):
        params = sum(p.numel() for p in MTPModel(mcfg).parameters())
    act = 4 if dtype == torch.float32 else 2
    live = mcfg.n_future if tc["backward"] == "naive" else 1  # memory-efficient: one head at a time
    block = (14 * mcfg.dim + 4 * mcfg.hidden_dim) * act
    trunk = (mcfg.n_trunk * mcfg.dim * act + block) if tc.get("activation_checkpointing") else mcfg.n_trunk * block
    heads = live * block if mcfg.head_type == "transformer" else 0
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
    from mtp.model import PRESETS
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
                if mcfg.n_future < spec["n_layers"] and estimate_memory(
                    ModelConfig(vocab_size=mcfg.vocab_size, n_future=mcfg.n_future, head_type=mcfg.head_type, **spec),
                    {**tc, "batch_size": 1}, dtype)["total"] * procs <= free]
        text += (f"; even train.batch_size 1 does not fit: use a smaller size preset"
                 f"{f' (the largest that fits: {fits[0]})' if fits else ''} or a machine with more memory")
    return est["total"] * procs, free, text


def is_out_of_memory(e):
    return isinstance(e, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(e, RuntimeError) and any(s in str(e) for s in ("out of memory", "can't allocate memory",
                                                                  "DefaultCPUAllocator: can't allocate")))


# ---------------------------------------------------------------- checkpoints

def _ckpts(folder):
    return sorted(Path(folder).glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))


def latest_checkpoint(folder):
    """The newest checkpoint whose sha256 matches its sidecar; broken ones are skipped."""
    for path in reversed(_ckpts(folder)):
        if checkpoint.is_valid(path):
            return path
    return None


def full_state(model, opt=None):
    """Unsharded state dicts (model, optimizer) keyed by parameter name, on CPU: the same format
    whatever the number of processes or FSDP/DDP, so a run resumes on any number of processes.
    Every process must call it (FSDP gathers the shards)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    sd = get_model_state_dict(model, options=opts)
    return sd, (get_optimizer_state_dict(model, opt, options=opts) if opt is not None else None)


def load_full_state(model, opt, sd, osd):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict
    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, sd, options=opts)
    set_optimizer_state_dict(model, opt, osd, options=opts)


def save_checkpoint(folder, step, model, opt, state, rank=0):
    sd, osd = full_state(model, opt)
    path = Path(folder) / f"step-{step:07d}.pt"
    if rank != 0:
        return path
    checkpoint.save(path, {"model": sd, "optimizer": osd, "step": step,
                           "torch_rng": torch.get_rng_state(), "state": state}, meta={"step": step})
    for old in _ckpts(folder)[:-2]:  # keep the two newest
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------- the stage

def train(cfg, entry, progress=True):
    """Train model `entry` (an item of mtp.config.models(cfg)); returns the metrics dict."""
    from mtp import tracking
    from mtp.config import data_dir
    from mtp.data import TokenData

    tc, n = entry["train"], entry["n"]
    out = Path(entry["dir"])
    device = pick_device(tc)
    dist = Dist(device)
    dtype = pick_dtype(tc, device)
    autocast = autocast_for(device, dtype)
    ddir = data_dir(cfg, entry["dataset"])
    train_data, val_data = TokenData(ddir, "train", verify=True), TokenData(ddir, "val", verify=True)

    torch.manual_seed(cfg["seed"])
    mcfg = ModelConfig.from_preset(entry["size"], train_data.vocab_size, n_future=n, head_type=tc["head_type"],
                                   extra=cfg["model_presets"])
    if tc["seq_len"] > mcfg.max_seq_len:
        raise UserError(f"train.seq_len {tc['seq_len']} exceeds the model's max_seq_len {mcfg.max_seq_len}")
    train_data.check_vocab(mcfg.vocab_size)
    need, free, advice = memory_advice(mcfg, tc, dtype, device, entry["size"])
    if need > free:
        raise UserError(f"not enough memory: {advice}")
    model = MTPModel(mcfg).to(device)
    model.activation_checkpointing = tc["activation_checkpointing"]
    dist.wrap(model, tc, device)
    if tc["compile"]:
        for block in [*model.trunk, *model.heads]:
            block.compile()
    opt = make_optimizer(model, tc)
    steps = total_steps(tc, dist.world)
    ckdir = out / "ckpt"
    state = {"history": {"step": [], "loss": [], "lr": [], **{f"loss_head_{i + 1}": [] for i in range(n)}},
             "val": {"step": [], **{f"val_loss_head_{i + 1}": [] for i in range(n)}},
             "tokens_seen": 0, "wall_s": 0.0}
    start = 0
    if dist.rank == 0:
        checkpoint.remove_stale_temps(ckdir)  # left by a killed run; this job owns the folder
        checkpoint.remove_stale_temps(out)
    last = latest_checkpoint(ckdir)
    if last is not None:
        ck = checkpoint.load(last, map_location=device)
        try:
            load_full_state(model, opt, ck["model"], ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(f"{last}: this checkpoint is of another model or optimizer than the config now describes "
                            f"({str(e).splitlines()[0][:120]}); delete {ckdir} to train from scratch, or restore "
                            f"the config") from None
        torch.set_rng_state(ck["torch_rng"])
        state, start = ck["state"], ck["step"]
        if dist.rank == 0:
            print(f"resuming {out} from {last.name} (step {start}/{steps})", flush=True)

    per_micro = tc["batch_size"]
    per_step = per_micro * tc["grad_accum"] * dist.world
    length = tc["seq_len"] + n
    scale = dist.loss_scale(tc["grad_accum"])
    log_every = max(1, steps // 100)
    params = {"model": {**mcfg.__dict__, "size": entry["size"]}, "train": tc, "dataset": entry["dataset"],
              "device": str(device), "dtype": str(dtype).replace("torch.", ""), "world_size": dist.world,
              "steps": steps, "seed": cfg["seed"]}

    def run_loop(run):
        nonlocal start
        counts = model.param_counts()
        if run:
            run.params(params)
            run.log(counts)
        bar = tqdm(total=steps, initial=start, desc=f"train {entry['dataset']}/{entry['size']}-n{n}",
                   disable=not progress or dist.rank != 0 or None, unit="step")
        t_last, tokens_last = time.perf_counter(), 0
        for step in range(start, steps):
            t0 = time.perf_counter()
            lr = lr_at(step, tc, steps)
            for g in opt.param_groups:
                g["lr"] = lr
            starts = global_starts(cfg["seed"], step, per_step, len(train_data.tokens), length)
            losses = torch.zeros(n)
            for j in range(tc["grad_accum"]):
                lo = (j * dist.world + dist.rank) * per_micro
                w = torch.from_numpy(train_data.windows(starts[lo:lo + per_micro], length)).to(device, non_blocking=True)
                x, ys = head_targets(w, n)
                losses += torch.stack(mtp_backward(model, x, ys, tc["backward"], scale, autocast)).float().cpu()
            dist.all_reduce_grads(model)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
            if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP
                grad_norm = grad_norm.full_tensor()
            losses = dist.mean(losses / tc["grad_accum"])
            total = float(losses.sum())
            if not math.isfinite(total) or not math.isfinite(float(grad_norm)):
                kept = latest_checkpoint(ckdir)
                raise UserError(f"loss became {total} at step {step} (grad norm {float(grad_norm)}); training stopped. "
                                f"Last good checkpoint: {kept or 'none'}. Lower train.lr or check the data")
            opt.step()
            opt.zero_grad(set_to_none=True)
            state["tokens_seen"] += per_step * tc["seq_len"]
            dt = time.perf_counter() - t0
            state["wall_s"] += dt
            tokens_last += per_step * tc["seq_len"]
            done = step + 1
            if done % log_every == 0 or done == steps:
                elapsed = time.perf_counter() - t_last
                tps = tokens_last / elapsed
                t_last, tokens_last = time.perf_counter(), 0
                metrics = {"loss": total, "lr": lr, "grad_norm": float(grad_norm), "tokens_per_s": tps,
                           "peak_mem_bytes": peak_mem_bytes(device), "step_time_s": dt,
                           **{f"loss_head_{i + 1}": float(l) for i, l in enumerate(losses)}}
                h = state["history"]
                h["step"].append(done)
                for k in ("loss", "lr", *[f"loss_head_{i + 1}" for i in range(n)]):
                    h[k].append(metrics[k])
                if run:
                    run.log(metrics, step=done)
                bar.set_postfix(loss=f"{total:.3f}", tok_s=f"{tps:,.0f}")
            if done % tc["eval_every"] == 0 or done == steps:
                vl = evaluate(model, val_data, tc, n, device, autocast)
                state["val"]["step"].append(done)
                for i, v in enumerate(vl):
                    state["val"][f"val_loss_head_{i + 1}"].append(v)
                if run:
                    run.log({f"val_loss_head_{i + 1}": v for i, v in enumerate(vl)}, step=done)
            if done % tc["checkpoint_every"] == 0 or done == steps:
                save_checkpoint(ckdir, done, model, opt, state, dist.rank)
            bar.update(1)
        bar.close()
        return counts, full_state(model)[0]

    if dist.rank != 0:
        run_loop(None)
        dist.close()
        return None
    with tracking.child_run(cfg, "train", dataset=entry["dataset"], size=entry["size"], n=n) as run:
        counts, final = run_loop(run)
        val = {k: v[-1] for k, v in state["val"].items() if k != "step" and v}
        bpb = val["val_loss_head_1"] / math.log(2) / val_data.bytes_per_token
        metrics = {"dataset": entry["dataset"], "size": entry["size"], "n": n, "steps": steps,
                   "tokens_seen": state["tokens_seen"], "wall_s": state["wall_s"], **counts, **val,
                   "val_bits_per_byte": bpb, "peak_mem_bytes": peak_mem_bytes(device),
                   "step_time_s": state["wall_s"] / max(1, steps), "device": str(device),
                   "dtype": params["dtype"], "history": state["history"], "val_history": state["val"],
                   "train_run_id": run.run_id}
        checkpoint.save_model(out, model, state_dict=final, extra={"dataset": entry["dataset"], "size": entry["size"], "n": n,
                                           "data_dir": str(ddir), "step": steps, "tokens_seen": state["tokens_seen"],
                                           "train_run_id": run.run_id})
        write_json(out / "metrics.json", metrics)
        run.log({"val_bits_per_byte": bpb, "tokens_seen": state["tokens_seen"], "wall_s": state["wall_s"]}, step=steps)
        run.artifact(out / "metrics.json")
        run.artifact(out / checkpoint.MODEL_FILE, "checkpoint")
    dist.close()
    return metrics


def add_arguments(p):
    add_config_arg(p)
    add_model_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    from mtp import config
    cfg = config.load(args.config)
    entry = config.find_model(cfg, args.dataset, args.size, args.n)
    try:
        m = train(cfg, entry, progress=not args.no_progress)
    except (MemoryError, RuntimeError) as e:
        if not is_out_of_memory(e):
            raise
        from mtp.config import data_dir
        from mtp.io import read_json
        tc = entry["train"]
        device = pick_device(tc)
        dtype = pick_dtype(tc, device)
        vocab = read_json(data_dir(cfg, entry["dataset"]) / "meta.json")["vocab_size"]
        mcfg = ModelConfig.from_preset(entry["size"], vocab, n_future=entry["n"], head_type=tc["head_type"],
                                       extra=cfg["model_presets"])
        raise UserError(f"out of memory ({str(e).splitlines()[0][:120]}); estimate: "
                        f"{memory_advice(mcfg, tc, dtype, device, entry['size'])[2]}") from None
    if m:
        print(f"{entry['dataset']}/{entry['size']}-n{entry['n']}: val loss head 1 {m['val_loss_head_1']:.4f} "
              f"({m['val_bits_per_byte']:.3f} bits/byte), {m['tokens_seen']:,} tokens in {m['wall_s']:.0f} s")
