"""Data parallelism under torchrun, and what every process agrees on: the batches of a step and the number
of steps.

At step s the global batch is a fixed function of (seed, s), so a resumed run, or a run on another number
of processes, sees exactly the same windows. Under torchrun each process takes its slice and gradients are
summed with all_reduce (data parallel).
"""
import math
import os

import numpy as np
import torch

from mtp import UserError


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


def global_starts(seed, step, count, n_tokens, length):
    """Start offsets of the `count` windows of step `step`: a pure function of (seed, step)."""
    if n_tokens <= length:
        raise UserError(f"the train split has {n_tokens} tokens, fewer than one window of {length}; "
                        f"use a larger corpus or a smaller train.seq_len")
    return np.random.default_rng([seed, step]).integers(0, n_tokens - length, size=count)


def total_steps(tc, world):
    if tc["tokens"]:
        per_step = tc["batch_size"] * tc["grad_accum"] * world * tc["seq_len"]
        return max(1, math.ceil(tc["tokens"] / per_step))
    return tc["max_steps"]
