"""One training step's pieces: the heads' targets, the backward of the summed head losses, the lr schedule,
the optimizer and the validation loss.

Memory-efficient backward (paper Section 2 / Fig. 2): forward the trunk once, detach z, then for each head
in turn forward + backward (accumulating dL/dz, freeing that head's logits), finally backprop dL/dz through
the trunk. Peak memory O(V + d) instead of O(nV + d); the gradients are those of the plain sum of head
losses (`naive`). train.backward chooses one of BACKWARDS.

Two options for heads added to a model that exists (both backwards apply them alike, so their gradients stay equal):
- `Objective.targets = "greedy"` (train.targets): heads 2..n learn head 1's greedy choice instead of the data's
  token: head i+1's target at t is head 1's argmax at t+i (self-distillation: what the speculative decoder's
  verification accepts), IGNORE where t+i falls past the window.
- `Objective.vocab` (train.loss_vocab): heads 2..n's softmax runs over a candidate set only: the loss_vocab most
  frequent tokens of the train split plus every target of the step (a sampled softmax without correction); the
  full-vocabulary unembedding is what a large-vocabulary model's extra heads spend most of their step on.
"""
from dataclasses import dataclass
from typing import Optional

import math

import numpy as np
import torch
import torch.nn.functional as F

from mtp import UserError


IGNORE = -100  # a position without a target (cross_entropy's ignore_index)


@dataclass(frozen=True)
class Objective:
    """What heads 2..n are trained on (train.targets, train.loss_vocab): see the module docstring."""
    targets: str = "data"
    vocab: Optional[torch.Tensor] = None  # frequent token ids (1-D), or None for the full vocabulary

    def head_targets(self, ys, g):
        """The heads' targets given head 1's greedy tokens g (B, T) (None for targets data): the data's, or g
        shifted."""
        if self.targets == "data":
            return ys
        out = [ys[0]]
        for i in range(1, len(ys)):
            y = torch.full_like(g, IGNORE)
            y[:, :-i] = g[:, i:]  # head i+1 at t: head 1's choice at t+i
            out.append(y)
        return out

    def candidates(self, ys):
        """Sorted token ids of heads 2..n's softmax this step (None: the full vocabulary)."""
        if self.vocab is None:
            return None
        return torch.unique(torch.cat([self.vocab.to(ys[0].device), *[y[y >= 0] for y in ys[1:]]]))


DATA = Objective()


def _ce(logits, y, cand=None):
    """Cross-entropy of logits (B, T, V') against targets y (B, T) in the full vocabulary; with `cand` (the ids of
    the V' columns) y is first mapped to its column."""
    if cand is not None:
        y = torch.where(y >= 0, torch.searchsorted(cand, y.clamp_min(0)), y)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE)


def head_targets(w, n):
    """Windows w (B, T+n) -> input (B, T) and n targets (B, T); head i+1 predicts w[t+i+1]."""
    T = w.shape[1] - n
    return w[:, :T], [w[:, i + 1:i + 1 + T] for i in range(n)]


def _trunk(model, x, autocast):
    """-> (z, cos, sin, ctx): the trunk's output and what the heads need to run on it."""
    B, T = x.shape
    ctx = autocast or torch.autocast(x.device.type, enabled=False)
    cos, sin = model.rope(T, device=x.device)
    with ctx:
        z = model.forward_trunk(x, cos, sin)  # (B, T, C)
    return z, cos, sin, ctx


def head_weights(spec, n):
    """train.head_weights -> n weights: None = 1 each (the paper's sum); a list (cut to n); {mtp_lambda: x} =
    DeepSeek-V3's next-token loss + x * mean of the other n-1 heads' losses."""
    if spec is None:
        return [1.0] * n
    if isinstance(spec, dict):
        return [1.0] + [spec["mtp_lambda"] / (n - 1)] * (n - 1) if n > 1 else [1.0]
    if len(spec) < n:
        raise UserError(f"train.head_weights: {len(spec)} weights for a model with n={n} heads; give at least {n}")
    return [float(w) for w in spec[:n]]


def naive_backward(model, x, ys, scale=1.0, autocast=None, weights=None, objective=DATA):
    """One backward of the (weighted) summed head losses: every head's logits stay alive until it runs."""
    z, cos, sin, ctx = _trunk(model, x, autocast)
    with ctx:
        states = model.head_states(z, cos, sin, ahead=ys)
        logits1 = model.logits(0, states[0])
        ys = objective.head_targets(ys, logits1.detach().argmax(-1))
        cand = objective.candidates(ys)
        losses = [_ce(logits1, ys[0])] + [_ce(model.logits(i, h, cand), y, cand)
                                          for i, (h, y) in enumerate(zip(states, ys)) if i > 0]
    weights = weights or [1.0] * len(ys)
    (sum(w * l for w, l in zip(weights, losses)) * scale).backward()
    return [l.detach() for l in losses]


def _head_loss(model, i, h, y, ctx, w, cand=None, greedy=False):
    """Head i's loss on its (detached) state h, backward into h.grad at once (its logits freed) -> (the loss, with
    greedy=True its greedy tokens (B, T), for Objective.head_targets, else None)."""
    with ctx:
        logits = model.logits(i, h, cand)  # (B, T, V) or (B, T, len(cand))
    loss = _ce(logits, y, cand)
    if loss.requires_grad:  # head 1 of a frozen model has nothing to train
        (loss * w).backward()
    return loss.detach(), logits.detach().argmax(-1) if greedy else None


def memory_efficient_backward(model, x, ys, scale=1.0, autocast=None, weights=None, objective=DATA):
    """The same gradients, one head's logits alive at a time: the trunk's z is cut from the graph (a leaf), the head
    type runs its heads on it with each loss backpropagated at once (behaviour.backward: parallel heads into dL/dz,
    heads reading head 1 through their chain into dL/dh_1 and head 1), then dL/dz runs through the trunk."""
    z, cos, sin, ctx = _trunk(model, x, autocast)
    zd = z.detach().requires_grad_(z.requires_grad)  # a frozen trunk (train.freeze) needs no dL/dz
    weights = [w * scale for w in (weights or [1.0] * len(ys))]

    def loss(i, h, y, cand=None, greedy=False):
        return _head_loss(model, i, h, y, ctx, weights[i], cand, greedy)

    losses = model.behaviour.backward(model, zd, cos, sin, ys, ctx, loss, objective)
    if z.requires_grad and zd.grad is not None:
        z.backward(zd.grad)
    return losses


BACKWARDS = {"naive": naive_backward, "memory_efficient": memory_efficient_backward}  # train.backward


def mtp_backward(model, x, ys, mode="memory_efficient", scale=1.0, autocast=None, weights=None, objective=DATA):
    """Forward + backward of the (weighted: head_weights) summed head losses on one micro-batch; returns each
    head's loss (detached, unweighted) against the objective's targets."""
    return BACKWARDS[mode](model, x, ys, scale, autocast, weights, objective)


def lr_at(step, tc, total):
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    if step < tc["warmup_steps"]:
        return tc["lr"] * (step + 1) / tc["warmup_steps"]
    frac = (step - tc["warmup_steps"]) / max(1, total - tc["warmup_steps"])
    return tc["lr"] * (tc["min_lr_ratio"] + (1 - tc["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def make_optimizer(model, tc):
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # train.freeze leaves some out
    decay = [p for n, p in params if p.dim() >= 2]
    no_decay = [p for n, p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": tc["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}], lr=tc["lr"], betas=(0.9, 0.95),
                             fused=False)


@torch.no_grad()
def evaluate(model, val, tc, n, device, autocast):
    """Mean validation loss per head on fixed, evenly spaced windows of the val split, and for heads 2..n their
    agreement with head 1: the fraction of positions t where head i's argmax equals head 1's argmax at t+i-1 (with
    the data's tokens before it: a teacher-forced stand-in for the acceptance of the draft at position i-1).
    -> (losses of heads 1..n, agreements of heads 2..n)."""
    model.eval()
    length = tc["seq_len"] + n
    count = tc["eval_batches"] * tc["batch_size"]
    if len(val.tokens) <= length:
        raise UserError(f"the val split has {len(val.tokens)} tokens, fewer than one window of {length}; "
                        f"raise val_fraction or lower train.seq_len")
    starts = np.linspace(0, len(val.tokens) - length - 1, count).astype(np.int64)
    sums, agree = torch.zeros(n), torch.zeros(n - 1)
    for i in range(0, count, tc["batch_size"]):
        w = torch.from_numpy(val.windows(starts[i:i + tc["batch_size"]], length)).to(device)
        x, ys = head_targets(w, n)
        with autocast:
            logits = model(x, ahead=ys)
        sums += torch.stack([F.cross_entropy(lg.float().flatten(0, 1), y.flatten()).cpu() for lg, y in zip(logits, ys)])
        g = logits[0].argmax(-1)  # (B, T)
        agree += torch.tensor([(lg.argmax(-1)[:, :-i] == g[:, i:]).float().mean().item()
                               for i, lg in enumerate(logits[1:], start=1)])
    model.train()
    return (sums / tc["eval_batches"]).tolist(), (agree / tc["eval_batches"]).tolist()
