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
    head_type: str = "transformer"
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
    def from_preset(cls, name, vocab_size, n_heads=1, head_type="transformer", extra=None):
        spec = dict(preset(name, extra))
        return cls(vocab_size=vocab_size, n_heads=n_heads, head_type=head_type, **spec)


def _rms(x, eps):
    """RMSNorm without its weight (statistics in float32)."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)


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


def attend(q, k, v, mask):
    """Causal (mask None) or masked attention; q (B, nh, T, hs), k/v (B, nkv, S, hs) with nkv dividing nh
    (grouped-query attention: query head i reads key/value head i // (nh / nkv))."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                          enable_gqa=k.shape[1] != q.shape[1])


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.nh, self.nkv, self.hs = cfg.n_attn_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.kv_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.kv_dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x, cos, sin, kv=None, mask=None):
        """kv: a cache with update(k, v) -> (all keys, all values); mask: bool (B, 1, T, S), True = attend."""
        B, T, C = x.shape
        q = self.wq(x).view(B, T, self.nh, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.wk(x).view(B, T, self.nkv, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.wv(x).view(B, T, self.nkv, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv is not None:
            k, v = kv.update(k, v)  # (B, nkv, S, hs)
        y = attend(q, k, v, mask)  # (B, nh, T, hs)
        return self.wo(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.w2 = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)

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
            if self.linear:  # z @ [P_1^T .. P_k^T] -> (.., k*C)
                self.register_buffer("proj", torch.cat([h.proj.weight.t() for h in heads], dim=1))
                return
            self.nh, self.nkv, self.hs = cfg.n_attn_heads * self.k, cfg.n_kv_heads * self.k, cfg.head_dim
            fold = lambda w, norm: w * norm.weight[None, :]  # noqa: E731  (x * g) W^T = x (W diag(g))^T
            qkv = [torch.cat([fold(getattr(h.attn, name).weight, h.attn_norm) for h in heads])
                   for name in ("wq", "wk", "wv")]
            self.register_buffer("wqkv", torch.cat(qkv).t().contiguous())  # (C, k*C + 2*k*kv_dim): q of every head, k, v
            self.register_buffer("wo", torch.stack([h.attn.wo.weight.t() for h in heads]))  # (k, C, C)
            self.register_buffer("w13", torch.stack([torch.cat([fold(h.mlp.w1.weight, h.mlp_norm),
                                                                fold(h.mlp.w3.weight, h.mlp_norm)]).t()
                                                     for h in heads]))  # (k, C, 2*hidden)
            self.register_buffer("w2", torch.stack([h.mlp.w2.weight.t() for h in heads]))  # (k, hidden, C)

    def forward(self, z, cos, sin, kv=None, mask=None, idx=None, cache=None):
        """z (B, T, C) -> hidden states of the k heads (k, B, T, C). kv: one cache layer of k*n_attn_heads heads.
        idx, cache: the forward's tokens and cache (read by mtp.decode_chain.ChainHeads only)."""
        B, T, C = z.shape
        if self.linear:
            return (z @ self.proj).view(B, T, self.k, C).permute(2, 0, 1, 3)
        qkv = _rms(z, self.eps) @ self.wqkv  # (B, T, k*C + 2*k*kv_dim)
        if self.nkv == self.nh:  # one view for all three (the common case, fewest ops)
            q, k, v = qkv.view(B, T, 3, self.nh, self.hs).transpose(1, 3).unbind(2)  # (B, k*nh, T, hs) each
        else:
            q, k, v = qkv.split([self.nh * self.hs, self.nkv * self.hs, self.nkv * self.hs], dim=-1)
            q = q.reshape(B, T, self.nh, self.hs).transpose(1, 2)  # (B, k*nh, T, hs)
            k, v = (t.reshape(B, T, self.nkv, self.hs).transpose(1, 2) for t in (k, v))  # (B, k*nkv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv is not None:
            k, v = kv.update(k, v)
        y = attend(q, k, v, mask)  # (B, k*nh, T, hs)
        y = y.view(B, self.k, -1, T, self.hs).permute(1, 0, 3, 2, 4).reshape(self.k, B * T, C)
        x = z.reshape(1, B * T, C) + torch.bmm(y, self.wo)  # (k, B*T, C)
        a, b = torch.bmm(_rms(x, self.eps), self.w13).chunk(2, dim=-1)
        return (x + torch.bmm(F.silu(a) * b, self.w2)).view(self.k, B, T, C)

    def cache_layers(self, cache, layer):
        """The KV-cache layer(s) forward's kv takes: one of k*n_kv_heads heads (None for linear heads)."""
        return None if self.linear else layer(cache, self.nkv, self.hs)


class SeparateHeads:
    """Heads 1..k+1 run one after another through MTPModel.head_states, for decoding: what FusedHeads does, for
    head types without a fused form (mtp.head_types: fused=False). kv: one cache layer per head, None for heads
    without attention."""

    def __init__(self, model, k):
        self.model, self.heads = model, range(k + 1)  # a plain object: the model owns the weights
        self.attends = [any(isinstance(m, Attention) for m in h.modules()) for h in model.heads[:k + 1]]
        self.nkv, self.hs = model.cfg.n_kv_heads, model.cfg.head_dim

    def __call__(self, z, cos, sin, kv=None, mask=None, idx=None, cache=None):
        """z (B, T, C) -> states of the heads (k+1, B, T, C)."""
        return torch.stack(self.model.head_states(z, cos, sin, self.heads, kv, mask))

    def cache_layers(self, cache, layer):
        return [layer(cache, self.nkv, self.hs) if a else None for a in self.attends] if any(self.attends) else None


class MTPModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.trunk = nn.ModuleList([Block(cfg) for _ in range(cfg.n_trunk)])
        ht = head_types.get(cfg.head_type)
        self.heads = nn.ModuleList([ht.module(i)(cfg) for i in range(cfg.n_heads)])
        self.reads_head1 = ht.reads_head1  # Medusa: heads 2..n read head 1's normed state, skip the final norm
        self.chain = ht.chain  # sequential: head i+1 reads head i's output and a token embedding (head_states)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
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
        """Head i's state (0-based) -> logits: the shared final norm and unembedding (heads that read head 1's
        normed state, Medusa's, go to the unembedding without the norm). vocab: token ids (sorted, 1-D) whose
        logits alone are computed (a sampled softmax in training: mtp.training.step.Objective), None = all."""
        x = h if i > 0 and self.reads_head1 else self.norm(h)
        return self.lm_head(x) if vocab is None else F.linear(x, self.lm_head.weight[vocab])

    def head_input(self, i, h1, prev, ahead=None):
        """What head i (0-based, i >= 1) of a model that reads head 1 runs on: head 1's normed state (Medusa;
        sequential head 2) or head i-1's output `prev` (sequential), with, for sequential heads, the keyword
        `emb` = the embedding of ahead[i-1] (B, T), the tokens i positions ahead (head i's own targets)."""
        x = self.norm(h1) if i == 1 or not self.chain else prev
        return (x, {"emb": self.tok_emb(ahead[i - 1])}) if self.chain else (x, {})

    def head_states(self, z, cos, sin, heads=None, kvs=None, mask=None, ahead=None):
        """z (B, T, C) -> the states (B, T, C) of the heads in `heads` (0-based; default: all), for logits().
        kvs: a KV-cache layer (or None) per head of `heads`, when decoding (model.SeparateHeads). ahead: the
        targets of heads 1..n-1 (training's targets), which sequential heads read (head_input)."""
        heads = list(range(self.cfg.n_heads) if heads is None else heads)
        kvs = [None] * len(heads) if kvs is None else kvs
        if not self.reads_head1:
            return [self.heads[i](z, cos, sin, kvs[j], mask) for j, i in enumerate(heads)]
        if self.chain and heads != list(range(len(heads))):
            raise ValueError("sequential heads run in a chain from head 1: heads must be 0..k")
        h1 = self.heads[0](z, cos, sin, kvs[0] if heads[0] == 0 else None, mask)
        out, prev = [], h1
        for j, i in enumerate(heads):
            if i > 0:
                x, kw = self.head_input(i, h1, prev, ahead)
                prev = self.heads[i](x, cos, sin, kvs[j], mask, **kw)
            out.append(h1 if i == 0 else prev)
        return out

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
