"""Multi-token prediction transformer (Gloeckle et al. 2024, Fig. 1).

A shared trunk of L-n Llama-style blocks maps tokens to z; n independent heads (one block each by default,
any registered head type: mtp/head_types.py) map z to h_i; ONE shared final
RMSNorm and ONE shared unembedding (untied from the input embedding) map h_i to logits.
Head i (1-based) predicts the token i positions ahead; head 1 is the next-token head.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from mtp import UserError, head_types
from mtp.presets import PRESETS, preset  # noqa: F401 - the size presets (mtp/presets.py), also read from here


@dataclass
class ModelConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_attn_heads: int
    n_heads: int = 1
    n_kv_heads: int = None  # key/value heads (grouped-query attention); None = n_attn_heads (one per query head)
    head_type: str = head_types.PAPER
    max_seq_len: int = 4096
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = False  # the unembedding is the input embedding (imported models that tie them)
    ffn_dim: int = None  # SwiGLU width; None = Llama's from dim, narrowed to match parameters across head types
    # (mtp.head_types.matched_hidden); imported models and heads added to a model set it

    def __post_init__(self):
        if self.n_heads < 1:
            raise UserError(f"n_heads must be >= 1, got {self.n_heads}")
        head_types.get(self.head_type, "head_type")
        if self.n_trunk < 1:
            raise UserError(f"n={self.n_heads} heads needs more than {self.n_heads} layers, the model has "
                            f"{self.n_layers}; use a deeper size or fewer heads")
        if self.dim % self.n_attn_heads:
            raise UserError(f"dim {self.dim} is not divisible by n_attn_heads {self.n_attn_heads}")
        if self.dim // self.n_attn_heads % 2:
            raise UserError(f"head size dim/n_attn_heads = {self.dim // self.n_attn_heads} must be even (rotary embeddings)")
        self.n_kv_heads = self.n_kv_heads or self.n_attn_heads
        if self.n_attn_heads % self.n_kv_heads:
            raise UserError(f"n_kv_heads {self.n_kv_heads} must divide n_attn_heads {self.n_attn_heads} (each key/value "
                            f"head serves a group of query heads)")

    @property
    def head_dim(self):
        return self.dim // self.n_attn_heads

    @property
    def kv_dim(self):
        """Width of the key (and value) projection: n_kv_heads * head_dim (= dim without grouped-query attention)."""
        return self.n_kv_heads * self.head_dim

    @property
    def n_trunk(self):
        """Trunk depth: L-n when each head takes a block (transformer heads: parameter matching), else L."""
        return head_types.n_trunk(self.n_layers, self.n_heads, self.head_type)

    @property
    def hidden_dim(self):
        return self.ffn_dim or head_types.matched_hidden(self.dim, self.n_layers, self.n_heads, self.head_type,
                                                                   self.kv_dim)

    @property
    def num_params(self):
        """Parameter count without building the model (mtp.head_types.num_params)."""
        return head_types.num_params(self.vocab_size, self.dim, self.n_layers, self.n_heads, self.head_type,
                                     self.hidden_dim, self.kv_dim)

    @classmethod
    def from_preset(cls, name, vocab_size, n_heads=1, head_type=head_types.PAPER, extra=None):
        spec = dict(preset(name, extra))
        return cls(vocab_size=vocab_size, n_heads=n_heads, head_type=head_type, **spec)


def _rms(x, eps):
    """RMSNorm without its weight (statistics in float32)."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)


FEW_ROWS_MIN = 2 ** 18  # entries of a matrix that few_rows_linear multiplies in its own form (tests set 0)


def few_rows_linear(x, w):
    """x @ w.T: w (out, C) and x (..., C) -> (..., out), as F.linear; or per slice, w (k, out, C) and x (k, R, C) ->
    (k, R, out). Decoding on a CPU multiplies a handful of rows by matrices streamed from memory, where the BLAS's
    x @ w.T path reads w at a third of the bandwidth that w @ x.T with >= 2 contiguous columns gets (2 cores, AMD
    EPYC, w 49,152 x 576: 1 row 9.9 ms, 3 rows 33 ms, 4 rows 16 ms against 2.9, 4.0, 4.0 ms): that form there, for
    matrices of >= 2^18 entries (smaller ones stay in cache, where the one-row product is faster), without autograd
    (benchmarks/RESULTS.md: matrix products of a few rows). Same values up to float rounding."""
    R = x.shape[-2] if w.dim() == 3 else x.numel() // x.shape[-1]
    if w.shape[-1] * w.shape[-2] < FEW_ROWS_MIN or x.device.type != "cpu" or R > 32 or torch.is_grad_enabled():
        return F.linear(x, w) if w.dim() == 2 else torch.bmm(x, w.transpose(1, 2))
    rows = x.reshape(-1, R, x.shape[-1])  # (1 or k, R, C)
    wide = rows.contiguous() if R > 1 else torch.cat([rows, rows], dim=1)  # one column takes the slow matrix-vector path
    out = torch.bmm(w, wide.transpose(1, 2)) if w.dim() == 3 else (w @ wide[0].t())[None]  # (1 or k, out, R)
    return out.transpose(1, 2)[:, :R].reshape(*x.shape[:-1], w.shape[-2])


class Linear(nn.Linear):
    """nn.Linear without bias whose forward is few_rows_linear (the blocks' matrices and the unembedding)."""

    def __init__(self, d_in, d_out):
        super().__init__(d_in, d_out, bias=False)

    def forward(self, x):
        return few_rows_linear(x, self.weight)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return _rms(x, self.eps) * self.weight


def rope_tables(cfg, pos):
    """cos/sin for integer positions `pos` (any shape) -> (*pos.shape, head_dim/2)."""
    hs = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hs, 2, device=pos.device, dtype=torch.float32) / hs))
    ang = pos.float()[..., None] * inv
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    """x (B, nh, T, hs); cos/sin (T, hs/2) or (B, T, hs/2). Llama's rotate-half convention."""
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hs/2)
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return out.type_as(x)


SCORES_MAX_T = 512  # training on a CPU: causal attention over at most this many positions as plain matrix products


def attend(q, k, v, mask, gqa):
    """Causal (mask None) or masked attention; q (B, nh, T, hs), k/v (B, nkv, S, hs) with nkv dividing nh; gqa:
    nkv < nh (grouped-query attention: query head i reads key/value head i // (nh / nkv)), a Python bool from the
    module's head counts (so that torch.compile with dynamic shapes sees a constant). Training on a CPU with at most
    SCORES_MAX_T positions: causal_scores_attention (the same values up to float rounding)."""
    if (mask is None and not gqa and q.device.type == "cpu" and q.shape[-2] <= SCORES_MAX_T
            and torch.is_grad_enabled()):
        return causal_scores_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=gqa)


def causal_scores_attention(q, k, v):
    """Causal attention as two matrix products around a float32 softmax of the (T, T) scores. Training steps on a
    CPU with it, compiled, are 7-9% faster than with PyTorch's CPU flash attention at head size 32 and T = 256 (the
    default study's tiny and deep models, bf16, one thread, 2 cores AMD EPYC; benchmarks/RESULTS.md: attention in
    training steps); its scores (B x heads x T x T float32) are kept for the backward, so only up to SCORES_MAX_T."""
    T = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)), -1).to(v.dtype) @ v


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.nh, self.nkv, self.hs = cfg.n_attn_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = Linear(cfg.dim, cfg.dim)
        self.wk = Linear(cfg.dim, cfg.kv_dim)
        self.wv = Linear(cfg.dim, cfg.kv_dim)
        self.wo = Linear(cfg.dim, cfg.dim)

    def forward(self, x, cos, sin, kv=None, mask=None):
        """kv: a cache with update(k, v) -> (all keys, all values); mask: bool (B, 1, T, S), True = attend."""
        B, T, C = x.shape
        q = self.wq(x).view(B, T, self.nh, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.wk(x).view(B, T, self.nkv, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.wv(x).view(B, T, self.nkv, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv is not None:
            k, v = kv.update(k, v)  # (B, nkv, S, hs)
        y = attend(q, k, v, mask, self.nkv != self.nh)  # (B, nh, T, hs)
        return self.wo(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.w1 = Linear(cfg.dim, cfg.hidden_dim)
        self.w3 = Linear(cfg.dim, cfg.hidden_dim)
        self.w2 = Linear(cfg.hidden_dim, cfg.dim)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, kv=None, mask=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, kv, mask)
        return x + self.mlp(self.mlp_norm(x))


BLOCK_NAMES = {"attn_norm.weight": "input_layernorm.weight", "mlp_norm.weight": "post_attention_layernorm.weight",
               "attn.wq.weight": "self_attn.q_proj.weight", "attn.wk.weight": "self_attn.k_proj.weight",
               "attn.wv.weight": "self_attn.v_proj.weight", "attn.wo.weight": "self_attn.o_proj.weight",
               "mlp.w1.weight": "mlp.gate_proj.weight", "mlp.w3.weight": "mlp.up_proj.weight",
               "mlp.w2.weight": "mlp.down_proj.weight"}  # a Block's weights under HF Llama's names (mtp.formats)


class MTPModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.trunk = nn.ModuleList([Block(cfg) for _ in range(cfg.n_trunk)])
        self.behaviour = head_types.get(cfg.head_type).behaviour()  # what the head type does (mtp.nn.heads.base)
        self.heads = nn.ModuleList(self.behaviour.modules(cfg))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = Linear(cfg.dim, cfg.vocab_size)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight  # one parameter under both names
        self.activation_checkpointing = False  # recompute trunk blocks in backward (train.activation_checkpointing)
        self.apply(self._init)
        for name, p in self.named_parameters():  # scaled residual projections (GPT-2)
            if name.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def rope(self, T, pos=None, device=None):
        """cos/sin for positions `pos` (B, T), or 0..T-1 when pos is None."""
        last = T - 1 if pos is None else int(pos.max())
        if last >= self.cfg.max_seq_len:
            raise UserError(f"position {last} exceeds the model's max_seq_len {self.cfg.max_seq_len}")
        return rope_tables(self.cfg, torch.arange(T, device=device) if pos is None else pos)

    def forward_trunk(self, idx, cos, sin, kvs=None, mask=None):
        """idx (B, T) -> z (B, T, C). kvs: one cache per trunk block, or None."""
        x = self.tok_emb(idx)  # (B, T, C)
        for i, block in enumerate(self.trunk):
            if self.activation_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, cos, sin, None, mask, use_reentrant=False)
            else:
                x = block(x, cos, sin, None if kvs is None else kvs[i], mask)
        return x

    def logits(self, i, h, vocab=None):
        """Head i's state (0-based) -> logits: the shared final norm (unless the head type skips it for head i:
        behaviour.normed) and unembedding. vocab: token ids (sorted, 1-D) whose logits alone are computed (a sampled
        softmax in training: mtp.training.step.Objective), None = all."""
        x = self.norm(h) if self.behaviour.normed(i) else h
        return self.lm_head(x) if vocab is None else F.linear(x, self.lm_head.weight[vocab])

    def head_states(self, z, cos, sin, heads=None, kvs=None, mask=None, ahead=None):
        """z (B, T, C) -> the states (B, T, C) of the heads in `heads` (0-based; default: all), for logits(): the
        head type's (behaviour.states). ahead: the targets of heads 2..n, which sequential heads read."""
        return self.behaviour.states(self, z, cos, sin, heads, kvs, mask, ahead)

    def forward(self, idx, heads=None, ahead=None):
        """idx (B, T) -> list of logits (B, T, V), one per head in `heads` (default: all). ahead: the targets of
        heads 1..n-1 (B, T) each, which sequential heads need (head_input)."""
        B, T = idx.shape
        cos, sin = self.rope(T, device=idx.device)
        z = self.forward_trunk(idx, cos, sin)
        heads = range(self.cfg.n_heads) if heads is None else heads
        return [self.logits(i, h) for i, h in zip(heads, self.head_states(z, cos, sin, heads, ahead=ahead))]

    def param_counts(self):
        count = lambda mod: sum(p.numel() for p in mod.parameters())
        total = count(self)
        out = {"params_total": total,
               "params_non_embedding": total - count(self.tok_emb) - count(self.lm_head),
               "params_trunk": count(self.trunk)}
        for i, h in enumerate(self.heads):
            out[f"params_head_{i + 1}"] = count(h)
        return out


def head_losses(logits, targets):
    """Cross-entropy of each head's logits (B, T, V) against its targets (B, T)."""
    return [F.cross_entropy(lg.float().flatten(0, 1), tg.flatten()) for lg, tg in zip(logits, targets)]
