"""Recursive heads: one MTP module (DeepSeek-V3's layout, mtp.nn.heads.sequential.SequentialHead) applied at every
depth, as vLLM's method "mtp" drafts with it (eagle-style; vLLM 0.32 runs its first MTP layer for every draft
position: benchmarks/results/vllm-mimo-mtp-probe-2026-11-30/FINDINGS.md). Registered as head type "recursive"
(mtp/head_types.py); heads 2..n are that one module (its parameters once).

Depth 1 at position p reads head 1's state h_p before the final norm and the embedding of token p+1 (zero at
position 0, as vLLM zeroes it), with causal attention over depth 1's own states, and predicts token p+2. Depth d >= 2
of the chain started at p runs at position p+d-1: it reads depth d-1's output of that chain and token p+d, attends to
depth 1's states at positions <= p and to the chain's own states at depths 2..d (one each), and predicts token p+d+1.
That is what vLLM computes when drafting: after a verification its first pass runs the module over the verified
positions with the target's states, and every further draft is one more row of the same module at the next
position, on its own KV cache. Training (depth_states) runs every chain at once: the keys of depth d are depth 1's
and the diagonals of depths 2..d (DepthKeys), trained with the loss of every depth.

Decoding (RecursiveProposer): a decode forward runs the trunk and head 1; propose() runs the module's first pass
over the forward's positions (tokens: the block shifted by one, the new pending token at the last verified one)
into the module's cache layer, drafts 1 from the last verified position, then drafts 2..k one position further each.
Entries written past the last verified position are overwritten by the next first pass before they are read.

Exported (`mtp export`) in XiaomiMiMo's layout, which vLLM 0.32 serves with `speculative_config={"method": "mtp"}`
(MiMoForCausalLM: a Qwen2 model, so every attention projection gets a zero bias; config num_nextn_predict_layers 1):
trunk + head 1 are model.layers.*, the module is model.mtp_layers.0.* (hidden_norm -> hidden_layernorm, token_norm ->
token_layernorm, proj -> input_proj, its block's weights under the block's HF names, norm -> final_layernorm).
"""
from dataclasses import replace

import torch

from mtp.nn.heads.proposer import Proposer
from mtp.nn.heads.sequential import Sequential, draft_token
from mtp.nn.model import BLOCK_NAMES, rope_tables


class DepthKeys:
    """The keys and values of the depths run so far (training): update() appends this depth's and returns all."""

    def __init__(self):
        self.k, self.v = [], []

    def update(self, k, v):
        self.k.append(k)
        self.v.append(v)
        return torch.cat(self.k, dim=2), torch.cat(self.v, dim=2)

    @staticmethod
    def mask(d, T, device):
        """Depth d's queries (T) over depths 1..d's keys (d*T): depth 1's up to the chain's start, then the chain's
        own key at each depth 2..d; None (causal) at depth 1."""
        if d == 1:
            return None
        eye = torch.eye(T, dtype=torch.bool, device=device)
        return torch.cat([torch.ones(T, T, dtype=torch.bool, device=device).tril()] + [eye] * (d - 1), dim=1)


def token_embedding(model, tokens, pos):
    """The embedding of `tokens` read at positions `pos` (broadcastable), zero at position 0 (vLLM's MTP input)."""
    return model.tok_emb(tokens) * (pos != 0)[..., None]


def depth_states(model, h1, ahead, k):
    """h1 (B, T, C): head 1's states before the final norm at positions 0..T-1; ahead[d-1] (B, T): the tokens d
    positions ahead -> the states of depths 1..k (B, T, C) each, depth d's of the chain started at each p."""
    B, T, _ = h1.shape
    pos = torch.arange(T, device=h1.device)
    keys, prev, out = DepthKeys(), h1, []
    for d in range(1, k + 1):
        cos, sin = rope_tables(model.cfg, pos + d - 1)
        emb = token_embedding(model, ahead[d - 1], pos + d - 1)
        prev = model.heads[1](prev, cos, sin, keys, DepthKeys.mask(d, T, h1.device), emb=emb)
        out.append(prev)
    return out


class Forwarded:
    """The last decode forward, for propose(): its tokens (B, T), head 1's states, positions and rotary tables."""

    def __init__(self):
        self.last = None

    def keep(self, rows):
        self.last = None  # compaction happens between a propose() and the next forward


class RecursiveProposer(Proposer):
    def cache_layers(self, cache, layer):
        """Head 1's cache layer, the module's, and the last forward (Forwarded)."""
        cfg = self.model.cfg
        return [layer(cache, cfg.n_kv_heads, cfg.head_dim) for _ in range(2)] + [Forwarded()]

    def __call__(self, z, cos, sin, kv, mask, idx=None, cache=None):
        h1 = self.model.heads[0](z, cos, sin, kv[0], mask)
        kv[-1].last = idx, h1, cache.step, cos, sin, mask
        return h1[None]

    def propose(self, cache, hd, j, x, sampler=None):
        """After a forward and its rollback, x (B,) the pending tokens, j (B,) the block index of each row's last
        verified position -> drafts (B, k): argmax, or drawn at the sampler's temperature."""
        if self.k == 0:
            return x.new_zeros(x.shape[0], 0)
        model, layer = self.model, cache.heads[1]
        idx, h1, step, cos, sin, mask = cache.heads[-1].last
        B, T = idx.shape
        b = torch.arange(B, device=x.device)
        tokens = torch.cat([idx[:, 1:], x[:, None]], dim=1)
        tokens[b, j] = x  # position p reads token p+1: the block's next one, the pending token at the last verified
        cache.step = step  # the module's cache layer writes at the forward's positions
        out = model.heads[1](h1, cos, sin, layer, mask, emb=token_embedding(model, tokens, step[1]))[b, j]  # (B, C)
        drafts = [self._choose(1, out, sampler)]
        S, last = step[2], cache.capacity - 1
        for s in range(1, self.k):
            pos = (cache.lengths - 1 + s).clamp_max(last)[:, None]  # (B, 1); past the context: never verified
            span = min(S + s, cache.capacity)
            cache.step = cache.rows, pos, span
            c, sn = rope_tables(model.cfg, pos)
            m = (cache.keys[None, None, :span] <= pos[:, :, None])[:, None]  # (B, 1, 1, S')
            emb = token_embedding(model, drafts[-1][:, None], pos)
            out = model.heads[1](out[:, None], c, sn, layer, m, emb=emb)[:, 0]
            drafts.append(self._choose(s + 1, out, sampler))
        cache.step = None
        return torch.stack(drafts, dim=1)

    def _choose(self, depth, out, sampler):
        return draft_token(self.model.logits(depth, out), sampler, first=depth == 1)


class Recursive(Sequential):
    """Heads 2..n are one module (modules()); its depths run as vLLM drafts (depth_states); head 1's state enters
    without the final norm (vLLM passes the target's pre-norm hidden state)."""

    def __init__(self, entry):
        super().__init__(entry)
        self.exports_drafter = False  # the module travels in the target's checkpoint (model.mtp_layers.0)

    def modules(self, cfg):
        shared = self.entry.module(1)(cfg)
        return [self.entry.module(0)(cfg)] + [shared] * (cfg.n_heads - 1)

    def states(self, model, z, cos, sin, heads=None, kvs=None, mask=None, ahead=None):
        heads = list(range(model.cfg.n_heads) if heads is None else heads)
        if heads != list(range(len(heads))):
            raise ValueError("recursive heads run in a chain from head 1: heads must be 0..k")
        h1 = model.heads[0](z, cos, sin, None if kvs is None else kvs[0], mask)
        return [h1] + depth_states(model, h1, ahead, len(heads) - 1)

    def backward(self, model, z, cos, sin, ys, ctx, loss, objective):
        """Head 1's loss on a leaf of its state; the depths' states in one graph on that leaf, each depth's loss on a
        leaf of its state (one logits tensor at a time), their gradients back through the depths at once, then
        through head 1 into z.grad."""
        with ctx:
            h1 = model.heads[0](z, cos, sin)
        leaf1 = h1.detach().requires_grad_(h1.requires_grad)
        first, g = loss(0, leaf1, ys[0], greedy=objective.targets == "greedy")
        ahead, ys = ys, objective.head_targets(ys, g)
        cand, losses = objective.candidates(ys), [first]
        with ctx:
            states = depth_states(model, leaf1, ahead, len(ys) - 1)
        leaves = [s.detach().requires_grad_(True) for s in states]
        losses += [loss(i, leaf, y, cand)[0] for i, (leaf, y) in enumerate(zip(leaves, ys[1:]), start=1)]
        if states:
            torch.autograd.backward(states, [leaf.grad for leaf in leaves])
        if h1.requires_grad and leaf1.grad is not None:
            h1.backward(leaf1.grad)
        return losses

    def proposer(self, model, k):
        return RecursiveProposer(model, k)

    def export_target(self, cfg, state):
        """Trunk + head 1 (L-1 blocks): the module is added by export_layout."""
        kept = {k: v for k, v in state.items() if not k.startswith("heads.") or k.startswith("heads.0.")}
        return replace(cfg, n_heads=1, n_layers=cfg.n_layers - 1, ffn_dim=cfg.hidden_dim), kept

    def export_layout(self, cfg, state, tensors):
        out = dict(tensors)
        if cfg.n_heads > 1:
            top = {"hidden_norm.weight": "hidden_layernorm.weight", "token_norm.weight": "token_layernorm.weight",
                   "proj.weight": "input_proj.weight", "norm.weight": "final_layernorm.weight",
                   **{f"block.{k}": v for k, v in BLOCK_NAMES.items()}}
            out.update({f"model.mtp_layers.0.{hf}": state[f"heads.1.{ours}"] for ours, hf in top.items()})
        for name, w in list(out.items()):  # Qwen2's attention projections have biases: zero
            if name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
                out[name[:-len("weight")] + "bias"] = torch.zeros(w.shape[0], dtype=w.dtype)
        conf = {"architectures": ["MiMoForCausalLM"], "model_type": "qwen2", "use_sliding_window": False,
                "num_nextn_predict_layers": 1 if cfg.n_heads > 1 else 0, "n_future_tokens": cfg.n_heads}
        return out, conf

    def served(self, exported, k):
        """vLLM's own MTP route on the exported MiMo checkpoint: no plugin, no drafter directory."""
        return {}, None if k == 0 else {"method": "mtp", "num_speculative_tokens": k}
