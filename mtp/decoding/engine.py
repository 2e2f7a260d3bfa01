"""Greedy and self-speculative decoding for MTPModel (gpt-fast style): the KV cache and the decoding
algorithm, no I/O, no timing. Its timing (bench) is mtp/decoding/timing.py; the `mtp decode` stage around
both is mtp/stages/decode.py.

Self-speculative decoding (Stern et al. 2018 blockwise parallel decoding; Gloeckle et al.
2024 Section 3.2). Row state: the cache holds positions 0..c-1, token x (position c) is
known but not yet fed, and drafts d_1..d_k are guesses for positions c+1..c+k.
One *decode forward* feeds the block [x, d_1..d_k] at positions c..c+k through the trunk and
heads 1..k+1. Head 1 at block index j gives g_j, the greedy token for position c+j+1.
Draft d_j is accepted when d_1..d_j all equal g_0..g_{j-1}; with a accepted drafts the row
gains the a+1 tokens g_0..g_a (the accepted drafts plus the bonus token g_a), its cache keeps
positions c..c+a and rolls back the k-a rejected ones, and heads 2..k+1 at block index a
(the last accepted position) propose the next drafts. Heads k+2..n are never run.
The output is the greedy output of head 1 (lossless), up to float rounding on exact ties.

Counting (every metric below means exactly this):
- prefill: the first forward over the prompt; it yields the first token and the first drafts.
  It is never counted as a decode forward.
- row-step: one unfinished row taking part in one decode forward. A batch of B unfinished rows
  makes B row-steps per decode forward. A finished row stays in the batch masked (computed, never
  counted, its output dropped) until half the batch has finished; then the batch is compacted.
- accepted drafts a of a row-step: as above, 0 <= a <= drafts verified in that step.
  They are counted as accepted even where they fall past max_new_tokens or after an eod and
  are then dropped from the output (vLLM counts drafts verified past max_tokens the same way).
- tokens per forward = sum over row-steps of (1 + a) / number of row-steps: the paper's
  "tokens per forward" (prefill excluded); exactly 1 for autoregressive decoding.
- acceptance rate at draft position j = row-steps with a >= j / row-steps that verified a
  j-th draft.
- accepted-length histogram: hist[a] = row-steps that accepted exactly a drafts.
- tokens/s, speed-up and quality: mtp/decoding/timing.py.

Stopping: a row stops once it has max_new_tokens new tokens, when it produces eod_id
(eod excluded from the output), or when prompt + output fills the context (max_seq_len).
A decode forward is run only for rows that have not stopped, so drafts are verified past
max_new_tokens only inside the row's last forward, never in an extra one; drafts of the
prefill or of the last forward that are never verified are not counted. Near the end of the
context the block is narrowed so that no position reaches max_seq_len.
"""
from dataclasses import dataclass, field

import torch

from mtp import UserError
from mtp.decoding.kvcache import KVCache
from mtp.nn.model import rope_tables
from mtp.decoding.sampling import Sampler

# A finished row stays in the batch, masked, until at most this fraction of the rows is unfinished;
# then the batch is compacted (every layer's K/V copied).
COMPACT_AT = 0.5

# ---------------------------------------------------------------- forward pieces


def forward(model, cache, idx, longest=None):
    """Feed idx (B, T) at each row's next positions; commit them in the cache.

    -> (hidden state of head 1 (B, T, C), of the drafting heads 2..k+1 of the cache (k, B, T, C) or None),
    before the final norm. longest: max(cache.lengths) if known. Positions stay below max_seq_len: the
    cache's capacity does.
    """
    B, T = idx.shape
    pos, mask = cache.begin(T, longest)  # (B, T), (B, 1, T, S')
    cos, sin = rope_tables(model.cfg, pos)  # (B, T, hs/2)
    z = model.forward_trunk(idx, cos, sin, cache.trunk, mask)  # (B, T, C)
    hs = cache.proposer(z, cos, sin, cache.heads, mask, idx, cache)  # (k+1, B, T, C); sequential: head 1 only
    cache.advance(T)
    return hs[0], hs[1:] if len(hs) > 1 else None


def unembed(model, h):
    """Head 1's state (..., C) -> logits (..., V): MTPModel.logits."""
    return model.logits(0, h)


def at(h, j):
    """h (B, T, C), j (B,) -> h[b, j[b]] (B, C)."""
    return h[torch.arange(h.shape[0], device=h.device), j]


def choose(logits, temperature=0.0, generator=None):
    """logits (B, V) -> tokens (B,): argmax, or a sample at `temperature`."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def verify(block, g):
    """block (B, T) = [x, d_1..d_{T-1}], g (B, T) head-1 greedy tokens -> accepted drafts a (B,)."""
    match = block[:, 1:] == g[:, :-1]  # (B, T-1): d_j == g_{j-1}
    return match.long().cumprod(dim=1).sum(dim=1)  # longest all-true prefix


def prefill(model, cache, prompts):
    """Right-padded prompts through the model; rows keep only their own prompt in the cache.

    -> (forward()'s hidden states (over Pmax positions), index of each row's last prompt token (B,)).
    """
    dev = cache.lengths.device
    lens = torch.tensor([len(p) for p in prompts], device=dev)
    idx = torch.zeros(len(prompts), int(lens.max()), dtype=torch.long, device=dev)  # (B, Pmax), pad = 0
    for b, p in enumerate(prompts):
        idx[b, :len(p)] = torch.tensor(p, dtype=torch.long)
    hs = forward(model, cache, idx)
    cache.rollback(idx.shape[1] - lens)  # the pads
    return hs, lens - 1


def start(model, cache, prompts, k, temperature=0.0, generator=None, sampler=None):
    """Prefill -> (x (B,) first new token, drafts (B, k))."""
    (h, hd), last = prefill(model, cache, prompts)
    x = choose(unembed(model, at(h, last)), temperature, generator)
    return x, cache.proposer.propose(cache, hd, last, x, sampler)  # mtp.nn.heads.proposer


def ar_step(model, cache, x, temperature=0.0, generator=None, longest=None):
    """One autoregressive decode forward with head 1 only: x (B,) -> next tokens (B,)."""
    h, _ = forward(model, cache, x[:, None], longest)  # (B, 1, C)
    return choose(unembed(model, h[:, -1]), temperature, generator)


def spec_step(model, cache, x, drafts, longest=None, sampler=None):
    """One speculative decode forward: verify, accept, roll back, propose (greedy, or speculative sampling
    with a mtp.decoding.sampling.Sampler).

    x (B,) pending tokens, drafts (B, j) with j <= k -> (g (B, j+1), a (B,), x_next (B,), drafts_next (B, k)):
    row b gains tokens g[b, :a[b]+1]; x_next = g[b, a[b]] is its new pending token.
    """
    block = torch.cat([x[:, None], drafts], dim=1)  # (B, T)
    B, T = block.shape
    h, hd = forward(model, cache, block, longest)  # heads 1..k+1
    if sampler is None:
        g = unembed(model, h).argmax(-1)  # (B, T)
        a = verify(block, g)
    else:
        g, a = sampler.verify(block, unembed(model, h))
    cache.rollback(T - 1 - a, check=False)  # 0 <= a <= T-1: never past what this forward added
    x = g.gather(1, a[:, None])[:, 0]
    return g, a, x, cache.proposer.propose(cache, hd, a, x, sampler)


# ---------------------------------------------------------------- the decoding loop


# vLLM's speculative-decoding counters (its SpecDecodingStats), which Stats keeps under the same names: the vLLM
# stage compares them with vLLM's own without translating.
COUNTERS = ("num_drafts", "num_draft_tokens", "num_accepted_tokens", "num_accepted_tokens_per_pos")


@dataclass
class Stats:
    """What one decoding run did; see the module docstring for the exact definitions. The counters carry vLLM's
    names (COUNTERS): num_drafts = row-steps (one per row and verification), num_draft_tokens[_per_pos] = drafts
    verified (at draft position j), num_accepted_tokens[_per_pos] = drafts accepted."""
    k: int
    prompts: int = 0
    new_tokens: int = 0  # output tokens after truncation
    forwards: int = 0  # batched decode forwards (prefill excluded)
    prefills: int = 0
    num_drafts: int = 0
    step_tokens: int = 0  # sum over row-steps of 1 + accepted drafts
    num_draft_tokens_per_pos: list = field(default_factory=list)
    num_accepted_tokens_per_pos: list = field(default_factory=list)
    accepted_hist: list = field(default_factory=list)

    def __post_init__(self):
        self.num_draft_tokens_per_pos = self.num_draft_tokens_per_pos or [0] * self.k
        self.num_accepted_tokens_per_pos = self.num_accepted_tokens_per_pos or [0] * self.k
        self.accepted_hist = self.accepted_hist or [0] * (self.k + 1)

    @property
    def num_draft_tokens(self):
        return sum(self.num_draft_tokens_per_pos)

    @property
    def num_accepted_tokens(self):
        return sum(self.num_accepted_tokens_per_pos)

    @property
    def tokens_per_forward(self):
        return self.step_tokens / self.num_drafts if self.num_drafts else None

    @property
    def accept_rate_per_pos(self):
        return [a / v if v else None for a, v in zip(self.num_accepted_tokens_per_pos, self.num_draft_tokens_per_pos)]

    def add(self, other):
        for name in ("prompts", "new_tokens", "forwards", "prefills", "num_drafts", "step_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("num_draft_tokens_per_pos", "num_accepted_tokens_per_pos", "accepted_hist"):
            setattr(self, name, [u + v for u, v in zip(getattr(self, name), getattr(other, name))])

    def counters(self):
        """{name: value} of COUNTERS."""
        return {c: getattr(self, c) for c in COUNTERS}

    def as_dict(self):
        return {"draft_tokens": self.k, "prompts": self.prompts, "new_tokens": self.new_tokens,
                "forwards": self.forwards, "prefills": self.prefills, "num_drafts": self.num_drafts,
                "step_tokens": self.step_tokens, "tokens_per_forward": self.tokens_per_forward,
                "num_draft_tokens_per_pos": self.num_draft_tokens_per_pos,
                "num_accepted_tokens_per_pos": self.num_accepted_tokens_per_pos,
                "accept_rate_per_pos": self.accept_rate_per_pos, "accepted_hist": self.accepted_hist}


def check_prompts(model, prompts):
    V, L = model.cfg.vocab_size, model.cfg.max_seq_len
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise UserError(f"prompt {i} is empty; decoding needs at least one prompt token")
        if len(p) >= L:
            raise UserError(f"prompt {i} has {len(p)} tokens, the model's context (max_seq_len) is {L}: "
                            f"no room to generate; shorten the prompt to at most {L - 1} tokens")
        if min(p) < 0 or max(p) >= V:
            raise UserError(f"prompt {i} holds token id {max(p) if max(p) >= V else min(p)} outside the "
                            f"model's vocabulary 0..{V - 1}")


def check_draft_tokens(model, k):
    """k drafted tokens (None = n-1) -> int, checked against the model's heads."""
    n = model.cfg.n_heads
    k = n - 1 if k is None else int(k)
    if k < 0 or k > n - 1:
        fix = "the model has one head and drafts nothing: use null" if n == 1 else f"use 1..{n - 1} or null (= n-1)"
        raise UserError(f"decode.draft_tokens: {k} drafted tokens need {k + 1} heads but the model has n={n}; {fix}")
    return k


class Outputs:
    """The new tokens of one batch, on the host: rows report what they gained once per decode forward.

    rows: batch row -> prompt index (the batch is compacted as rows finish); room[i]: how many
    tokens prompt i may get (max_new_tokens or the rest of the context).
    """

    def __init__(self, lens, max_new_tokens, max_seq_len, eod_id):
        self.out = [[] for _ in lens]
        self.room = [min(max_new_tokens, max_seq_len - n) for n in lens]
        self.rows = list(range(len(lens)))
        self.eod_id = eod_id

    def take(self, r, toks):
        """Batch row r gains the tokens toks (a list) -> whether its prompt is finished.

        It stops at eod (excluded) or when it has no room left; tokens past the stop are dropped.
        """
        i = self.rows[r]
        o, m = self.out[i], len(toks)
        room = self.room[i] - len(o)
        e = toks.index(self.eod_id) if self.eod_id in toks else m
        o.extend(toks[:min(e, room)])
        return e < m or room <= m


def _counts(stats, hist, verified_at):
    """Host tallies -> Stats: hist[a] row-steps that accepted a drafts, verified_at[j] row-steps that verified j."""
    k = stats.k
    stats.accepted_hist = hist
    stats.step_tokens = sum((a + 1) * h for a, h in enumerate(hist))
    stats.num_accepted_tokens_per_pos = [sum(hist[p + 1:]) for p in range(k)]  # a <= j: an accepted draft was verified
    stats.num_draft_tokens_per_pos = [sum(verified_at[p + 1:]) for p in range(k)]


@torch.inference_mode()
def decode_batch(model, prompts, max_new_tokens, eod_id=None, k=0, temperature=0.0, generator=None, proposer=None):
    """Decode one batch of prompts; k = 0: autoregressive with head 1, k >= 1: self-speculative (greedy, or
    speculative sampling at temperature > 0: mtp.decoding.sampling, distributed as sampling from head 1).

    -> (new tokens per prompt, Stats). Rows progress independently (ragged). A finished row stays in
    the batch, masked (its cache length held at 0: in bounds, never read), until half the batch has
    finished; then the batch is compacted. One device read per decode forward; the cache lengths are
    mirrored on the host.
    """
    B, L = len(prompts), model.cfg.max_seq_len
    sampler = Sampler(temperature, generator) if k and temperature else None  # speculative sampling
    stats = Stats(k=k, prompts=B, prefills=1)
    lens = [len(p) for p in prompts]
    cache = KVCache(model, B, min(max(lens) + max_new_tokens + k, L), k, proposer)
    x, drafts = start(model, cache, prompts, k, temperature, generator, sampler)
    out = Outputs(lens, max_new_tokens, L, eod_id)
    hist, verified_at = [0] * (k + 1), [0] * (k + 1)
    alive = [not out.take(r, [t]) for r, t in enumerate(x.tolist())]
    lengths, mask = list(lens), None  # host mirror of cache.lengths; (alive, as a device tensor)
    while True:
        n = sum(alive)
        if n == 0:
            break
        if n <= len(alive) * COMPACT_AT:  # compact: finished rows leave the batch
            sel = [r for r, al in enumerate(alive) if al]
            idx = torch.tensor(sel, device=x.device)
            cache.keep(idx)
            x, drafts, mask = x[idx], drafts[idx], None
            if sampler is not None:
                sampler.keep(idx)
            out.rows, lengths, alive = [out.rows[r] for r in sel], [lengths[r] for r in sel], [True] * n
        elif n < len(alive):
            if mask is None or mask[0] != alive:
                mask = alive.copy(), torch.tensor(alive, device=x.device)
            cache.lengths = cache.lengths * mask[1]
        longest = max(c for c, al in zip(lengths, alive) if al)
        stats.forwards += 1
        stats.num_drafts += n
        if k == 0:
            x = ar_step(model, cache, x, temperature, generator, longest)
            rows = [[t, 0] for t in x.tolist()]
        else:
            j = min(k, L - 1 - longest)  # drafts this step; positions stay < max_seq_len
            g, a, x, drafts = spec_step(model, cache, x, drafts[:, :j], longest, sampler)
            rows = torch.cat([g, a[:, None]], dim=1).tolist()  # the step's one device read
            verified_at[j] += n
        for r, row in enumerate(rows):
            if alive[r]:
                a_r = row[-1]
                hist[a_r] += 1
                lengths[r] += a_r + 1
                alive[r] = not out.take(r, row[:a_r + 1])
    _counts(stats, hist, verified_at)
    stats.new_tokens = sum(len(o) for o in out.out)
    return out.out, stats


def decode(model, prompts, max_new_tokens, eod_id=None, draft_tokens=0, batch_size=8, temperature=0.0, seed=0):
    """Decode prompts in consecutive batches of batch_size -> (new tokens per prompt, summed Stats).

    draft_tokens: 0 = autoregressive with head 1 only; k >= 1 (or None = n-1) = self-speculative greedy.
    """
    check_prompts(model, prompts)
    k = check_draft_tokens(model, draft_tokens)
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed) if temperature else None
    outs, total = [], Stats(k=k)
    proposer = model.behaviour.proposer(model, k)  # built once (fused heads stack their weights), for every batch
    for lo in range(0, len(prompts), batch_size):
        o, s = decode_batch(model, prompts[lo:lo + batch_size], max_new_tokens, eod_id, k, temperature, gen, proposer)
        outs += o
        total.add(s)
    return outs, total


def generate(model, prompts, max_new_tokens, eod_id, temperature=0.0, seed=0, batch_size=8):
    """New tokens for each prompt (stopping before eod_id or at max_new_tokens).

    With n > 1 heads, decoding is self-speculative with every head: greedy (temperature 0: the same output
    as head-1 greedy decoding) or speculative sampling (temperature > 0: distributed as sampling from head 1,
    mtp.decoding.sampling), with a generator seeded by `seed`.
    """
    if not prompts:
        return []
    k = model.cfg.n_heads - 1
    return decode(model, prompts, max_new_tokens, eod_id, k, batch_size, temperature, seed)[0]


def acceptance_counts(model, prompts, max_new_tokens, eod_id=None, draft_tokens=None):
    """Per prompt, alone (batch 1): the speculative decoder's counts, named as vLLM's spec-decode metrics.

    -> list of {"num_drafts": decode forwards (each verifies a block of drafts),
    "num_draft_tokens": drafts verified, "num_accepted_tokens": drafts accepted,
    "num_accepted_tokens_per_pos": [accepted at draft position 1..k], "tokens": new tokens}.
    A forward runs only while the prompt has fewer than max_new_tokens new tokens (and no eod);
    its whole block of k drafts is verified, and drafts accepted past max_new_tokens (or after
    eod) are counted as accepted though dropped from "tokens" (vLLM's rule). The drafts made by
    the last forward are never verified and not counted. Drafts are fewer than k only where the
    block would pass max_seq_len.
    """
    if not prompts:
        raise UserError("acceptance_counts: no prompts given")
    out = []
    for p in prompts:
        toks, s = decode(model, [p], max_new_tokens, eod_id, draft_tokens, batch_size=1)
        out.append({**s.counters(), "tokens": toks[0]})
    return out
