"""Sequential heads: DeepSeek-V3's multi-token prediction modules (arXiv 2412.19437, Section 2.2), registered as head
type "sequential" (mtp/head_types.py).

Head 1 is the model's last transformer block (the next-token head). Head i+1 (i >= 1) is module i: at position t it
reads the previous depth's state h^{i-1}_t (head 2: head 1's final-normed state; head i+1: head i's output) and the
embedding of token t+i (the shared input embedding), RMS-normalises both, concatenates them, projects 2d -> d, runs
one transformer block (causal attention over its own states) and its own RMSNorm; the result goes to the shared
unembedding directly and is what module i+1 reads. It predicts token t+i+1. In training the tokens t+i are the
window's (head i's targets); in decoding the module reads the tokens just drafted (ChainProposer, below).

Decoding (ChainProposer):
A decode forward runs the trunk and head 1 only (ChainProposer.__call__). Drafting then runs the modules in turn at the
row's last verified position P (its pending token x at P+1): module 1 reads head 1's normed state at P and x, and
drafts d_1 for P+2; module j reads module j-1's state at P and d_{j-1}, and drafts d_j. That is the model's own
forward on the sequence with the drafts appended, so every module also needs its own states (its KV cache) at the
positions before P, and the state of position i in module j needs token i+j: it is final only once that token is
verified. The caches therefore lag: module j's entries after P+1-j were computed from drafts, and those of them
after P'-j (P' the next pass's position) from drafts the next forward rejected. Each drafting pass recomputes a
window of the last w = max(T, k) positions up to P in every module (T: the forward's tokens per row, >= a+1, the new
positions; k >= j: the wrong entries), which overwrites the wrong entries with what the verified tokens give. The
window reads head 1's normed states and the tokens from per-row buffers (ChainState) kept at every position, like a
KV-cache layer. Positions before 0 (short prompts) are clamped to 0 and recomputed alike.
"""
import torch
import torch.nn as nn

from mtp import UserError, require_compiler
from mtp.nn.heads.base import OnHead1
from mtp.nn.heads.proposer import Proposer
from mtp.nn.model import Block, RMSNorm, rope_tables


class SequentialHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.hidden_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.token_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.proj = nn.Linear(2 * cfg.dim, cfg.dim, bias=False)
        self.block = Block(cfg)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x, cos, sin, kv=None, mask=None, emb=None):
        """x (B, T, C): the previous depth's state; emb (B, T, C): the embedding of the token this module reads
        -> its state (B, T, C), unembedded without the model's final norm."""
        h = self.proj(torch.cat([self.hidden_norm(x), self.token_norm(emb)], dim=-1))
        return self.norm(self.block(h, cos, sin, kv, mask))


class ChainState:
    """Per batch row, at every position: the token (verified, pending or drafted) and head 1's normed state."""

    def __init__(self, owner, dim, k):
        B, S = owner.lengths.shape[0], owner.capacity
        self.tokens = torch.zeros(B, S + k + 1, dtype=torch.long, device=owner.lengths.device)
        self.h1 = torch.zeros(B, S, dim, dtype=owner.dtype, device=owner.lengths.device)
        self.span = 0  # keys span (S') and tokens per row (T) of the last forward

    def keep(self, rows):
        self.tokens, self.h1 = self.tokens[rows], self.h1[rows]


class ChainProposer(Proposer):
    """Heads 1..k+1 of a model with sequential heads, for decoding: a decode forward runs head 1 only, propose()
    drafts with the modules in turn (compiled: greedy drafting as one torch.compile graph, compiled_draft_chain)."""

    def __init__(self, model, k, compiled=False):
        super().__init__(model, k)
        self.draft = compiled_draft_chain() if compiled and k else draft_chain

    def cache_layers(self, cache, layer):
        """Head 1's cache layer, one per module 1..k, and the ChainState (last)."""
        cfg = self.model.cfg
        return [layer(cache, cfg.n_kv_heads, cfg.head_dim) for _ in range(self.k + 1)] + \
            [ChainState(cache, self.model.cfg.dim, self.k)]

    def __call__(self, z, cos, sin, kv, mask, idx=None, cache=None):
        """z (B, T, C), the forward's tokens idx (B, T) -> head 1's state (1, B, T, C); records the tokens and
        head 1's normed states at the forward's positions for propose()."""
        h1 = self.model.heads[0](z, cos, sin, kv[0], mask)
        rows, pos, S = cache.step
        state = kv[-1]
        state.tokens[rows, pos] = idx
        state.h1[rows, pos] = self.model.norm(h1)
        state.span = S, idx.shape[1]
        return h1[None]

    def propose(self, cache, hd, j, x, sampler=None):
        """After a forward and its rollback (cache.lengths = P+1), x (B,) the pending tokens -> drafts (B, k)
        (hd, j: unused, the modules run here):
        argmax of each module in turn (draft_chain, compiled if asked), or drawn at the sampler's temperature (its
        q: every draft's distribution; eager)."""
        if self.k == 0:
            return x.new_zeros(x.shape[0], 0)
        state = cache.heads[-1]
        S, T = state.span
        w = max(T, self.k)
        B = x.shape[0]
        P = cache.lengths - 1  # (B,)
        pos = (P[:, None] - w + 1 + torch.arange(w, device=x.device)).clamp_min(0)  # (B, w)
        rows = cache.rows.expand(B, w)
        state.tokens[rows[:, 0], P + 1] = x
        mask = (cache.keys[None, None, :S] <= pos[:, :, None])[:, None]  # (B, 1, w, S')
        cache.step = rows, pos, S  # where every module's cache layer writes (LayerCache.update)
        draft = draft_chain if sampler is not None else self.draft
        drafts = draft(self.model, cache.heads[1:-1], state.tokens, state.h1, rows, pos, P, mask, self.k, sampler)
        cache.step = None
        return drafts


def draft_chain(model, layers, tokens, h1, rows, pos, P, mask, k, sampler=None):
    """The modules in turn over the window `pos` (B, w) ending at P (B,): module j reads module j-1's states (module
    1: head 1's normed states h1) and the tokens j ahead (its own drafts written into `tokens` as it goes) -> drafts
    (B, k). One graph under torch.compile (greedy): no host reads, every tensor preallocated or made here."""
    cos, sin = rope_tables(model.cfg, pos)  # (B, w, hs/2)
    prev, drafts = h1[rows, pos], []
    for j in range(1, k + 1):
        emb = model.tok_emb(tokens[rows, pos + j])
        prev = model.heads[j](prev, cos, sin, layers[j - 1], mask, emb=emb)  # (B, w, C)
        logits = model.logits(j, prev[:, -1])  # (B, V): at P
        d = draft_token(logits, sampler, first=j == 1)
        tokens[rows[:, 0], P + 1 + j] = d
        drafts.append(d)
    return torch.stack(drafts, dim=1)


def draft_token(logits, sampler, first):
    """One draft per row from a module's logits (B, V): argmax, or drawn by the sampler (first: the step's first)."""
    return logits.argmax(-1) if sampler is None else sampler.propose_next(logits, first=first)


_compiled = None


def compiled_draft_chain():
    """draft_chain under torch.compile (dynamic shapes: batch rows, window and keys span vary; compiled on first
    use, ~10 s per batch-size class on 2 cores; a C++ compiler is needed on CPU)."""
    global _compiled
    if _compiled is None:
        require_compiler("decode.compile")
        _compiled = torch.compile(draft_chain, dynamic=True)
    return _compiled


class Sequential(OnHead1):
    """Head i+1 reads head i's output (head 2: head 1's normed state) and the embedding of the token i positions
    ahead of the one head 1 reads; added to a model (init_from) the modules start freshly initialised, as
    DeepSeek-V3 trains them."""

    def head_input(self, model, i, h1, prev, ahead):
        """-> (head 1's normed state for head 2, else head i-1's output; emb = the embedding of ahead[i-1] (B, T),
        the tokens i positions ahead: head i's own targets)."""
        return (model.norm(h1) if i == 1 else prev), {"emb": model.tok_emb(ahead[i - 1])}

    def states(self, model, z, cos, sin, heads=None, kvs=None, mask=None, ahead=None):
        if heads is not None and list(heads) != list(range(len(heads))):
            raise ValueError("sequential heads run in a chain from head 1: heads must be 0..k")
        return super().states(model, z, cos, sin, heads, kvs, mask, ahead)

    def proposer(self, model, k):
        return ChainProposer(model, k, compiled=self.compile_drafting)

    def check_targets(self, targets):
        if targets == "greedy":
            raise UserError("train.targets: greedy trains parallel heads on head 1's choices; sequential heads read "
                            "the tokens ahead themselves: use targets: data")

    def new_heads(self, model, state):
        return {}
