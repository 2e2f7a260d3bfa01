"""Heads 1..k+1 of a model for decoding (mtp/decoding/engine.py), behind one interface (vLLM's v1/spec_decode: one proposer
per method): a Proposer computes the heads' states in a decode forward, owns their KV-cache layers (always a list:
one entry per layer it writes, None for a head without attention) and proposes the next drafts. This base runs the
heads one after another through the head type's own states() and drafts from heads 2..k+1's states; subclasses:
mtp.nn.heads.parallel.FusedProposer (heads fused into one block), mtp.nn.heads.sequential.ChainProposer (drafts in turn)."""
import torch

from mtp.nn.model import Attention


class Proposer:
    def __init__(self, model, k):
        self.model, self.k = model, k  # a plain object: the model owns the weights
        self.attends = [any(isinstance(m, Attention) for m in h.modules()) for h in model.heads[:k + 1]]

    def cache_layers(self, cache, layer):
        """The KV-cache layers of heads 1..k+1: layer(cache, key/value heads, head size) per head that attends."""
        cfg = self.model.cfg
        return [layer(cache, cfg.n_kv_heads, cfg.head_dim) if a else None for a in self.attends]

    def __call__(self, z, cos, sin, kv=None, mask=None, idx=None, cache=None):
        """z (B, T, C) -> states of heads 1..k+1 (k+1, B, T, C), before the final norm. kv: cache_layers()'s list;
        idx, cache: the forward's tokens and cache (read by proposers that draft in turn)."""
        heads = range(self.k + 1)
        return torch.stack(self.model.behaviour.states(self.model, z, cos, sin, heads, kv, mask))

    def propose(self, cache, hd, j, x, sampler=None):
        """Drafts from the drafting heads' states hd (k, B, T, C) at block index j (B,) -> (B, k) tokens: their
        argmax, or drawn at the sampler's temperature (mtp.decoding.sampling). x (B,): the pending tokens (unused here)."""
        if hd is None:
            return torch.zeros(j.shape[0], 0, dtype=torch.long, device=j.device)
        h = hd[:, torch.arange(j.shape[0], device=j.device), j]  # (k, B, C)
        logits = self.model.logits(1, h).transpose(0, 1)  # (B, k, V)
        return logits.argmax(-1) if sampler is None else sampler.propose(logits)
