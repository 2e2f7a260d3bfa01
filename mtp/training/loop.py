"""One model's training: set up (device, data, model, optimizer, resume), run the steps with their
evaluations and checkpoints, write the final model and metrics.json.

The loop logs to a run it is handed (the interface of mtp.tracking.Run: params, log, artifact, run_id);
the train stage opens it, so this library never imports MLflow. Only rank 0 logs and writes.
"""
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from mtp import UserError, checkpoint, head_types, require_compiler
from mtp.config import data_dir
from mtp.data import TokenData
from mtp.io import write_json
from mtp.nn.model import ModelConfig, MTPModel
from mtp.spec import ModelSpec
from mtp.training.device import autocast_for, pick_device, pick_dtype
from mtp.training.dist import Dist, global_starts, total_steps
from mtp.training.memory import memory_advice, peak_mem_bytes
from mtp.training import init_from
from mtp.training.step import Objective, evaluate, head_targets, head_weights, lr_at, make_optimizer, mtp_backward
from mtp import results


@dataclass
class Job:
    """Everything one model's training holds, from set-up to the last step; `state` and `start` come from
    the checkpoint it resumes from."""
    cfg: dict
    entry: ModelSpec  # the model
    device: torch.device
    dist: Dist
    dtype: torch.dtype
    autocast: torch.autocast
    ddir: Path
    train_data: TokenData
    val_data: TokenData
    mcfg: ModelConfig
    model: MTPModel
    opt: torch.optim.Optimizer
    steps: int
    state: dict  # history, val history, tokens_seen, wall_s: what a checkpoint carries
    objective: Objective  # train.targets, train.loss_vocab
    start: int = 0

    tc = property(lambda self: self.entry.train)
    n_heads = property(lambda self: self.entry.n_heads)
    out = property(lambda self: Path(self.entry.dir))
    ckdir = property(lambda self: self.out / "ckpt")
    per_micro = property(lambda self: self.tc["batch_size"])
    per_step = property(lambda self: self.per_micro * self.tc["grad_accum"] * self.dist.world)  # windows a step
    length = property(lambda self: self.tc["seq_len"] + self.n_heads)  # a window: the input and n targets
    scale = property(lambda self: self.dist.loss_scale(self.tc["grad_accum"]))
    weights = property(lambda self: head_weights(self.tc.get("head_weights"), self.n_heads))  # train.head_weights
    log_every = property(lambda self: max(1, self.steps // 100))

    @property
    def params(self):
        e = self.entry
        return {"model": {**self.mcfg.__dict__, "size": e.size}, "train": self.tc, "dataset": e.dataset,
                "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "world_size": self.dist.world, "steps": self.steps, "seed": self.entry.seed,
                "head_weights_used": self.weights}


class StepResult(NamedTuple):
    lr: float
    losses: torch.Tensor  # (n,) each head's loss, averaged over micro-batches and processes
    total: float
    grad_norm: torch.Tensor  # before clipping


def train(cfg, entry, open_run, progress=True):
    """Train model `entry` (a mtp.spec.ModelSpec), resuming from its last checkpoint; returns the
    metrics dict on rank 0, None on the other processes. open_run() -> a context manager yielding the run to
    log to, opened once set-up has passed."""
    job = setup(cfg, entry)
    if job.dist.rank != 0:
        run_steps(job, None, progress)
        job.dist.close()
        return None
    with open_run() as run:
        counts, final = run_steps(job, run, progress)
        metrics = finish(job, run, counts, final)
    job.dist.close()
    return metrics


# ---------------------------------------------------------------- set-up

def setup(cfg, entry):
    """Device, data, a seeded model that fits in memory, its optimizer; resumed from the newest valid checkpoint."""
    tc = entry.train
    device = pick_device(tc)
    dist = Dist(device)
    dtype = pick_dtype(tc, device)
    ddir = data_dir(cfg, entry.dataset)
    train_data, val_data = TokenData(ddir, "train", verify=True), TokenData(ddir, "val", verify=True)
    torch.manual_seed(entry.seed)
    source = init_from.read(entry, cfg["results"]) if entry.init_from else None  # heads added to an existing model
    if source is not None:
        mcfg = init_from.config_from(entry, source, train_data.vocab_size, cfg["model_presets"])
    else:
        mcfg = ModelConfig.from_preset(entry.size, train_data.vocab_size, n_heads=entry.n_heads,
                                       head_type=tc["head_type"], extra=cfg["model_presets"])
    if tc["seq_len"] > mcfg.max_seq_len:
        raise UserError(f"train.seq_len {tc['seq_len']} exceeds the model's max_seq_len {mcfg.max_seq_len}")
    train_data.check_vocab(mcfg.vocab_size)
    need, free, advice = memory_advice(mcfg, tc, dtype, device, entry.size)
    if need > free:
        raise UserError(f"not enough memory: {advice}")
    model = build_model(mcfg, tc, dist, device, source)
    job = Job(cfg=cfg, entry=entry, device=device, dist=dist, dtype=dtype,
              autocast=autocast_for(device, dtype), ddir=ddir, train_data=train_data,
              val_data=val_data, mcfg=mcfg, model=model, opt=make_optimizer(model, tc),
              steps=total_steps(tc, dist.world), state=empty_state(entry.n_heads),
              objective=objective(tc, train_data, mcfg, device))
    resume(job)
    return job


def objective(tc, train_data, mcfg, device):
    """train.targets and train.loss_vocab as the step's Objective (loss_vocab: the train split's most frequent
    token ids)."""
    head_types.get(mcfg.head_type).behaviour().check_targets(tc["targets"])
    vocab = None
    if tc["loss_vocab"]:
        counts = np.bincount(np.asarray(train_data.tokens), minlength=mcfg.vocab_size)
        vocab = torch.from_numpy(np.sort(np.argsort(-counts, kind="stable")[:tc["loss_vocab"]])).to(device)
    return Objective(targets=tc["targets"], vocab=vocab)


def build_model(mcfg, tc, dist, device, source=None):
    """The model on `device` (seeded by the caller; from the init_from source's payload if any, with train.freeze
    applied), wrapped for data parallelism, its blocks compiled if asked."""
    model = MTPModel(mcfg)
    if source is not None:
        init_from.load_source(model, source)
    init_from.freeze(model, tc["freeze"])
    model = model.to(device)
    model.activation_checkpointing = tc["activation_checkpointing"]
    dist.wrap(model, tc, device)
    if tc["compile"]:
        require_compiler("train.compile", device.type)
        for block in [*model.trunk, *model.heads]:
            block.compile()
    return model


def empty_state(n):
    return {"history": {"step": [], "loss": [], "lr": [], **{f"loss_head_{i + 1}": [] for i in range(n)}},
            "val": {"step": [], **{f"val_loss_head_{i + 1}": [] for i in range(n)}},
            "tokens_seen": 0, "wall_s": 0.0}


def resume(job):
    """Continue from the newest valid checkpoint in <model>/ckpt, if any: weights, optimizer, torch RNG, state."""
    if job.dist.rank == 0:
        checkpoint.remove_stale_temps(job.ckdir)  # left by a killed run; this job owns the folder
        checkpoint.remove_stale_temps(job.out)
    last = checkpoint.latest_checkpoint(job.ckdir)
    if last is None:
        return
    ck = checkpoint.load(last, map_location=job.device)
    try:
        checkpoint.load_full_state(job.model, job.opt, ck["model"], ck["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise UserError(f"{last}: this checkpoint is of another model or optimizer than the config now describes "
                        f"({str(e).splitlines()[0][:120]}); delete {job.ckdir} to train from scratch, or restore "
                        f"the config") from None
    torch.set_rng_state(ck["torch_rng"])
    job.state, job.start = ck["state"], ck["step"]
    if job.dist.rank == 0:
        print(f"resuming {job.out} from {last.name} (step {job.start}/{job.steps})", flush=True)


# ---------------------------------------------------------------- the steps

def run_steps(job, run, progress):
    """Steps job.start..job.steps, each logged, evaluated and checkpointed on its schedule;
    -> (parameter counts, the final unsharded state dict)."""
    counts = job.model.param_counts()
    if run:
        run.params(job.params)
        run.log(counts)
    e = job.entry
    bar = tqdm(total=job.steps, initial=job.start, desc=f"train {e.name}",
               disable=not progress or job.dist.rank != 0 or None, unit="step")
    meter = Throughput()
    tokens = job.per_step * job.tc["seq_len"]
    for step in range(job.start, job.steps):
        t0 = time.perf_counter()
        result = train_step(job, step)
        job.state["tokens_seen"] += tokens
        dt = time.perf_counter() - t0
        job.state["wall_s"] += dt
        meter.tokens += tokens
        done = step + 1
        if done % job.log_every == 0 or done == job.steps:
            log_step(job, run, bar, done, result, meter.rate(), dt)
        if done % job.tc["eval_every"] == 0 or done == job.steps:
            evaluate_step(job, run, done)
        if done % job.tc["checkpoint_every"] == 0 or done == job.steps:
            checkpoint.save_checkpoint(job.ckdir, done, job.model, job.opt, job.state, job.dist.rank)
        bar.update(1)
    bar.close()
    return counts, checkpoint.full_state(job.model)[0]


def train_step(job, step):
    """One optimizer step: lr, this process's slices of the step's windows, backward per micro-batch, gradient
    sync and clipping. Stops with a UserError when the loss or gradient norm is not finite."""
    tc, dist = job.tc, job.dist
    lr = lr_at(step, tc, job.steps)
    for g in job.opt.param_groups:
        g["lr"] = lr
    starts = global_starts(job.entry.seed, step, job.per_step, len(job.train_data.tokens), job.length)
    losses = torch.zeros(job.n_heads)
    for j in range(tc["grad_accum"]):
        lo = (j * dist.world + dist.rank) * job.per_micro
        window = job.train_data.windows(starts[lo:lo + job.per_micro], job.length)
        w = torch.from_numpy(window).to(job.device, non_blocking=True)
        x, ys = head_targets(w, job.n_heads)
        losses += torch.stack(mtp_backward(job.model, x, ys, tc["backward"], job.scale, job.autocast,
                                           job.weights, job.objective)).float().cpu()
    dist.all_reduce_grads(job.model)
    grad_norm = torch.nn.utils.clip_grad_norm_(job.model.parameters(), tc["grad_clip"])
    if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP
        grad_norm = grad_norm.full_tensor()
    losses = dist.mean(losses / tc["grad_accum"])
    total = float(losses.sum())
    if not math.isfinite(total) or not math.isfinite(float(grad_norm)):
        kept = checkpoint.latest_checkpoint(job.ckdir)
        raise UserError(f"loss became {total} at step {step} (grad norm {float(grad_norm)}); training stopped. "
                        f"Last good checkpoint: {kept or 'none'}. Lower train.lr or check the data")
    job.opt.step()
    job.opt.zero_grad(set_to_none=True)
    return StepResult(lr, losses, total, grad_norm)


class Throughput:
    """Tokens per second since the last call of rate()."""

    def __init__(self):
        self.t_last, self.tokens = time.perf_counter(), 0

    def rate(self):
        tps = self.tokens / (time.perf_counter() - self.t_last)
        self.t_last, self.tokens = time.perf_counter(), 0
        return tps


def log_step(job, run, bar, done, result, tps, dt):
    """Step `done`'s metrics: into the run, the state's history and the progress bar."""
    metrics = {"loss": result.total, "lr": result.lr, "grad_norm": float(result.grad_norm), "tokens_per_s": tps,
               "peak_mem_bytes": peak_mem_bytes(job.device), "step_time_s": dt,
               **{f"loss_head_{i + 1}": float(l) for i, l in enumerate(result.losses)}}
    h = job.state["history"]
    h["step"].append(done)
    for k in ("loss", "lr", *[f"loss_head_{i + 1}" for i in range(job.n_heads)]):
        h[k].append(metrics[k])
    if run:
        run.log(metrics, step=done)
    bar.set_postfix(loss=f"{result.total:.3f}", tok_s=f"{tps:,.0f}")


def evaluate_step(job, run, done):
    """Validation loss per head and the heads' agreement with head 1 after step `done` (with the training wall time
    so far: the curve of agreement against training minutes): into the state's val history and the run."""
    vl, agree = evaluate(job.model, job.val_data, job.tc, job.n_heads, job.device, job.autocast)
    metrics = {**{f"val_loss_head_{i + 1}": v for i, v in enumerate(vl)},
               **{f"val_agree_head_{i + 2}": a for i, a in enumerate(agree)}, "wall_s": job.state["wall_s"]}
    val = job.state["val"]
    val["step"].append(done)
    for k, v in metrics.items():
        val.setdefault(k, []).append(v)  # checkpoints from before agreement was measured lack its keys
    if run:
        run.log(metrics, step=done)


# ---------------------------------------------------------------- the end

def finish(job, run, counts, final):
    """model.pt and metrics.json of the finished run, logged to `run`; -> the metrics."""
    state, e = job.state, job.entry
    val = {k: v[-1] for k, v in state["val"].items() if k not in ("step", "wall_s") and v}
    bpb = val["val_loss_head_1"] / math.log(2) / job.val_data.bytes_per_token
    metrics = {"dataset": e.dataset, "size": e.size, "head_type": e.head_type, "n": job.n_heads, "steps": job.steps,
               "tokens_seen": state["tokens_seen"], "wall_s": state["wall_s"], **counts, **val,
               "val_bits_per_byte": bpb, "peak_mem_bytes": peak_mem_bytes(job.device),
               "step_time_s": state["wall_s"] / max(1, job.steps), "device": str(job.device),
               "dtype": job.params["dtype"], "history": state["history"], "val_history": state["val"],
               "train_run_id": run.run_id}
    checkpoint.save_model(job.out, job.model, state_dict=final,
                          extra={"dataset": e.dataset, "size": e.size, "n": job.n_heads, "data_dir": str(job.ddir),
                                 "step": job.steps, "tokens_seen": state["tokens_seen"], "train_run_id": run.run_id})
    write_json(job.out / results.file("metrics"), results.checked("metrics", metrics))
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics["logged_model_id"] = run.logged_model(e.name.replace("/", "-"), scalars, job.params,
                                                  [job.out / "model.json", job.out / results.file("metrics")])
    write_json(job.out / results.file("metrics"), results.checked("metrics", metrics))  # the id: `mtp export` adds the HF export to that model
    run.log({"val_bits_per_byte": bpb, "tokens_seen": state["tokens_seen"], "wall_s": state["wall_s"]}, step=job.steps)
    run.artifact(job.out / results.file("metrics"))
    run.artifact(job.out / checkpoint.MODEL_FILE, "checkpoint")
    return metrics
