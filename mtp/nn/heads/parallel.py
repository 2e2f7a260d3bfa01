"""Parallel heads that decode fused: the paper's transformer heads (one Block each, mtp.nn.model.Block) and its
Table S4 alternative, linear heads (LinearHead), registered as head types "transformer" and "linear"
(mtp/head_types.py). Both read the trunk's z and draft from heads 2..k+1 of one forward (mtp.nn.heads.proposer);
for decoding their heads 1..k+1 run as one block (FusedHeads, FusedProposer)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mtp.nn.heads.base import HeadBehaviour
from mtp.nn.heads.proposer import Proposer
from mtp.nn import model as model_lib
from mtp.nn.model import _rms, apply_rope, attend


class LinearHead(nn.Module):
    """The paper's Table S4 alternative: a d x d linear map on z (no attention, no cache)."""

    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x, cos=None, sin=None, kv=None, mask=None):
        return self.proj(x)


class FusedHeads(nn.Module):
    """Several heads of one model fused into one block, for decoding: heads 1..k+1 (k drafted tokens).

    Same function as running each head (Block or LinearHead) on the shared z, in a few large ops
    instead of one set of small ops per head: on a CPU at decoding sizes each op's fixed cost
    dominates, and separate heads made a speculative forward cost k extra blocks. Each RMSNorm's
    weight is folded into the matrix after it; the heads' attention heads run side by side as one
    attention of (k+1) * n_attn_heads query heads and (k+1) * n_kv_heads key/value heads (one KV cache layer;
    head j's query heads read head j's key/value heads, as grouped-query attention groups them). Outputs equal the separate heads' up
    to float rounding; greedy and speculative decoding both read head 1 from here, so they agree.
    """

    def __init__(self, heads, cfg):
        super().__init__()
        self.k, self.eps, self.linear = len(heads), cfg.norm_eps, isinstance(heads[0], LinearHead)
        with torch.no_grad():
            # (out, in) matrices, as nn.Linear keeps them, for few_rows_linear where it takes its own form (large
            # matrices), else (in, out) for a plain x @ w
            self.out_in = cfg.dim * cfg.dim >= model_lib.FEW_ROWS_MIN
            lay = (lambda w: w) if self.out_in else (lambda w: w.transpose(-1, -2).contiguous())  # noqa: E731
            if self.linear:  # [P_1; ..; P_k] (k*C, C)
                self.register_buffer("proj", lay(torch.cat([h.proj.weight for h in heads])))
                return
            self.nh, self.nkv, self.hs = cfg.n_attn_heads * self.k, cfg.n_kv_heads * self.k, cfg.head_dim
            fold = lambda w, norm: w * norm.weight[None, :]  # noqa: E731  (x * g) W^T = x (W diag(g))^T
            qkv = [torch.cat([fold(getattr(h.attn, name).weight, h.attn_norm) for h in heads])
                   for name in ("wq", "wk", "wv")]
            self.register_buffer("wqkv", lay(torch.cat(qkv)))  # (k*C + 2*k*kv_dim, C): q of every head, k, v
            self.register_buffer("wo", lay(torch.stack([h.attn.wo.weight for h in heads])))  # (k, C, C)
            self.register_buffer("w13", lay(torch.stack([torch.cat([fold(h.mlp.w1.weight, h.mlp_norm),
                                                                    fold(h.mlp.w3.weight, h.mlp_norm)])
                                                         for h in heads])))  # (k, 2*hidden, C)
            self.register_buffer("w2", lay(torch.stack([h.mlp.w2.weight for h in heads])))  # (k, C, hidden)

    def product(self, x, w):
        """x @ w^T for one of the matrices above (x (k, R, C) for the stacked ones)."""
        return model_lib.few_rows_linear(x, w) if self.out_in else x @ w

    def forward(self, z, cos, sin, kv=None, mask=None):
        """z (B, T, C) -> hidden states of the k heads (k, B, T, C). kv: one cache layer of k*n_kv_heads heads."""
        B, T, C = z.shape
        if self.linear:
            return self.product(z, self.proj).view(B, T, self.k, C).permute(2, 0, 1, 3)
        qkv = self.product(_rms(z, self.eps), self.wqkv)  # (B, T, k*C + 2*k*kv_dim)
        if self.nkv == self.nh:  # one view for all three (the common case, fewest ops)
            q, k, v = qkv.view(B, T, 3, self.nh, self.hs).transpose(1, 3).unbind(2)  # (B, k*nh, T, hs) each
        else:
            q, k, v = qkv.split([self.nh * self.hs, self.nkv * self.hs, self.nkv * self.hs], dim=-1)
            q = q.reshape(B, T, self.nh, self.hs).transpose(1, 2)  # (B, k*nh, T, hs)
            k, v = (t.reshape(B, T, self.nkv, self.hs).transpose(1, 2) for t in (k, v))  # (B, k*nkv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv is not None:
            k, v = kv.update(k, v)
        y = attend(q, k, v, mask, self.nkv != self.nh)  # (B, k*nh, T, hs)
        y = y.view(B, self.k, -1, T, self.hs).permute(1, 0, 3, 2, 4).reshape(self.k, B * T, C)
        x = z.reshape(1, B * T, C) + self.product(y, self.wo)  # (k, B*T, C)
        a, b = self.product(_rms(x, self.eps), self.w13).chunk(2, dim=-1)
        return (x + self.product(F.silu(a) * b, self.w2)).view(self.k, B, T, C)


class FusedProposer(Proposer):
    """Heads 1..k+1 as one FusedHeads block (built once per decode() and reused across its batches)."""

    def __init__(self, model, k):
        super().__init__(model, k)
        self.fused = FusedHeads(model.heads[:k + 1], model.cfg)

    def cache_layers(self, cache, layer):
        """One cache layer of (k+1) * n_kv_heads key/value heads (none for linear heads)."""
        return [] if self.fused.linear else [layer(cache, self.fused.nkv, self.fused.hs)]

    def __call__(self, z, cos, sin, kv=None, mask=None, idx=None, cache=None):
        return self.fused(z, cos, sin, kv[0] if kv else None, mask)


class Fused(HeadBehaviour):
    """Parallel heads with a fused form for decoding (transformer, linear)."""

    def proposer(self, model, k):
        return FusedProposer(model, k)
