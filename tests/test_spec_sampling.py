"""Speculative sampling (mtp/decoding/sampling.py) over many decoding steps: its first L = 8 new tokens are distributed as
sampling from head 1 token by token, for k = 1..3 drafts and every registered head type; and the checker refuses
the wrong rules (a wrong acceptance test, residual or bonus token, monkeypatched into Sampler.verify).

The checker. A tiny random model (vocabulary V = 3, logits scaled so that head 1 and the drafting heads disagree
often but not always) samples N = 8000 continuations of one prompt at temperature 0.8 through the real decoding
engine (mtp.decoding.engine.decode, batch N). The exact distribution of plain sampling from head 1 is computed in float64
by enumerating all V^L = 6561 continuations (head 1's log-probabilities from one forward of a float64 copy of the
model); from it, every per-position marginal (L tables of V cells) and every pair joint (28 tables of V^2 cells).
Eight tokens with k <= 3 span several decode steps, so the tokens after a rejection, the bonus tokens and the
steps after them all fall inside the window (the test asserts that every accepted length 0..k occurred).

The tolerance cannot flake. For m cells and N i.i.d. samples, P(TV(empirical, exact) >= eps) <= (2^m - 2)
exp(-2 N eps^2) (Weissman et al. 2003: Hoeffding on each of the 2^m - 2 nontrivial events, union bound). Each
table is checked at eps = sqrt((ln(2^m - 2) + ln(1 / DELTA)) / (2N)), DELTA = 1e-9: 0.041 for a pair table, 0.038
for a marginal. The rows of one decode are i.i.d. (one prompt; every random draw is per row), so a correct
sampler fails one table with probability <= 1e-9, and this file's 14 decodes x 36 tables that must pass with
<= 5.1e-7, whatever the seed or the random number generator's stream; the float32 decoding path differs from the
float64 exact values by ~1e-7. The seeds are fixed too, so a run is reproducible. The correct sampler's worst table
sits at about half its eps.

The wrong rules each move some table by 0.09 to 0.37 in total variation at the k they are checked at (2.3 to 9
times its eps, over decode seeds 1..3), so each goes red with a wide margin.
"""
import functools
import itertools
import math

import pytest
import torch

from mtp.decoding import engine as D
from mtp.head_types import HEAD_TYPES, n_trunk
from mtp.nn.model import ModelConfig, MTPModel
from mtp.decoding.sampling import Sampler

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny matmuls on one thread

V, L, TEMPERATURE, N, N_HEADS = 3, 8, 0.8, 8000, 4
PROMPT = [1, 0, 2]
DELTA = 1e-9  # false-alarm probability of one table for a correct sampler


def tiny_model(head_type, seed=0):
    """n = 4 heads of `head_type` on a one-block trunk (dim 16); the unembedding scaled by 20: distributions far
    from uniform and from each other, so drafts are accepted in part (every accepted length 0..3 occurs)."""
    layers = 1 + N_HEADS - n_trunk(N_HEADS, N_HEADS, head_type)  # the blocks the heads take, plus a trunk of one
    torch.manual_seed(seed)
    model = MTPModel(ModelConfig(vocab_size=V, dim=16, n_layers=layers, n_attn_heads=2, n_heads=N_HEADS,
                                 head_type=head_type)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    return model


def tables(seqs, weights):
    """seqs (M, L) token sequences with weights (M,) -> {(i,): marginal of position i (V,), (i, j): joint of
    positions i < j (V*V,)}."""
    out = {(i,): torch.zeros(V, dtype=torch.float64).index_add_(0, seqs[:, i], weights) for i in range(L)}
    for i, j in itertools.combinations(range(L), 2):
        out[i, j] = torch.zeros(V * V, dtype=torch.float64).index_add_(0, seqs[:, i] * V + seqs[:, j], weights)
    return out


@functools.cache
def exact_tables(head_type):
    """The tables of plain sampling from head 1 at TEMPERATURE, exactly (float64, every continuation)."""
    model = tiny_model(head_type).double()
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)))  # (V^L, L)
    idx = torch.cat([torch.tensor(PROMPT).expand(len(seqs), -1), seqs], dim=1)
    with torch.no_grad():
        logits = model(idx, heads=[0])[0][:, len(PROMPT) - 1:-1]  # (V^L, L, V): head 1 before each new token
    logp = torch.log_softmax(logits / TEMPERATURE, dim=-1)
    return tables(seqs, logp.gather(2, seqs[..., None])[..., 0].sum(1).exp())


def tolerance(cells):
    """eps with P(TV >= eps) <= DELTA for the empirical distribution of N samples over `cells` cells."""
    return math.sqrt((math.log(2 ** cells - 2) + math.log(1 / DELTA)) / (2 * N))


def off_tables(head_type, k, seed=1):
    """Speculative sampling with k drafts, N rows -> (the tables whose total variation from the exact ones
    exceeds their tolerance: [(key, tv, eps)], accepted-length histogram)."""
    out, stats = D.decode(tiny_model(head_type), [PROMPT] * N, L, draft_tokens=k, batch_size=N,
                          temperature=TEMPERATURE, seed=seed)
    samples = torch.tensor(out)  # (N, L)
    assert samples.shape == (N, L)
    empirical = tables(samples, torch.full((N,), 1 / N, dtype=torch.float64))
    off = []
    for key, exact in exact_tables(head_type).items():
        tv, eps = 0.5 * float((empirical[key] - exact).abs().sum()), tolerance(len(exact))
        if tv >= eps:
            off.append((key, round(tv, 4), round(eps, 4)))
    return off, stats.accepted_hist


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("head_type", list(HEAD_TYPES))
def test_speculative_sampling_is_distributed_as_sampling_from_head1(head_type, k):
    off, hist = off_tables(head_type, k)
    # the window holds rejections at every draft position, full acceptances (bonus tokens) and the steps after them
    assert min(hist) > sum(hist) / 50, hist
    assert off == []


# ---------------------------------------------------------------- the wrong rules, each refused by the checker
# Sampler.verify restated from three pieces (accept, residual, bonus), in float64, so that one piece can be wrong.
# The pieces' shapes: u, pd, qd (B, j): uniforms, p and q at the drafts -> accepted drafts a (B,); p (B, j, V)
# head 1 at the draft positions, q (B, j, V) the drafts' distributions -> residual (B, j, V); p (B, j+1, V) and q
# -> bonus distribution (B, V).


def accept(u, pd, qd):
    return (u < pd / qd).long().cumprod(dim=1).sum(dim=1)  # draft j with probability min(1, p/q), up to a rejection


def residual(p, q):
    r = (p - q).clamp_min(0)
    return torch.where(r.sum(-1, keepdim=True) > 0, r, p)  # norm(max(0, p - q)); draw() normalises


def bonus(p, q):
    return p[:, -1]  # head 1 after the last draft


def verify_with(accept=accept, residual=residual, bonus=bonus):
    """A Sampler.verify from the three pieces; bonus=None: a row that accepts every draft gains the drafts only
    (its last draft becomes the pending token, the bonus is not drawn)."""
    def verify(self, block, logits):
        B, T = block.shape
        j = T - 1
        p, q = self.probs(logits).double(), self.q[:, :j].double()  # (B, T, V), (B, j, V)
        drafts = block[:, 1:]  # (B, j)
        rows, pos = torch.arange(B, device=block.device)[:, None], torch.arange(j, device=block.device)[None, :]
        u = torch.rand(B, j, generator=self.generator, dtype=torch.float64, device=block.device)
        a = accept(u, p[rows, pos, drafts], q[rows, pos, drafts])  # (B,)
        full = (a == j) & (bonus is None)
        a = a - full.long()
        last = (bonus or (lambda p, q: p[:, -1]))(p, q)[:, None]  # (B, 1, V); unused where full
        new = self.draw(torch.cat([residual(p[:, :j], q), last], dim=1)[rows[:, 0], a])  # (B,)
        g = torch.cat([drafts, torch.zeros_like(block[:, :1])], dim=1)  # (B, j+1)
        g[rows[:, 0], a] = torch.where(full, drafts[:, -1], new)
        return g, a
    return verify


WRONG = {  # name: (the rule, the k it is checked at)
    "accept every draft": (dict(accept=lambda u, pd, qd: torch.full_like(pd[:, 0], pd.shape[1], dtype=torch.long)), 2),
    "accept with min(1, q/p)": (dict(accept=lambda u, pd, qd: accept(u, qd, pd)), 2),
    "one uniform for all drafts": (dict(accept=lambda u, pd, qd: accept(u[:, :1], pd, qd)), 3),
    "no stop at the first rejection": (dict(accept=lambda u, pd, qd: (u < pd / qd).long().sum(dim=1)), 3),
    "resample from p after a rejection": (dict(residual=lambda p, q: p), 1),
    "residual max(0, q - p)": (dict(residual=lambda p, q: residual(q, p)), 1),
    "bonus from the last draft's q": (dict(bonus=lambda p, q: q[:, -1]), 1),
    "bonus from head 1 at the last draft": (dict(bonus=lambda p, q: p[:, -2]), 1),
}


@pytest.mark.parametrize("rule", list(WRONG))
def test_checker_refuses_a_wrong_rule(monkeypatch, rule):
    pieces, k = WRONG[rule]
    monkeypatch.setattr(Sampler, "verify", verify_with(**pieces))
    off, _ = off_tables("transformer", k)
    assert off, f"the checker passed the wrong rule '{rule}'"


@pytest.mark.parametrize("pieces", [{}, {"bonus": None}], ids=["restated rule", "no bonus token"])
def test_checker_passes_the_restated_rule_and_a_lossless_change(monkeypatch, pieces):
    """Controls for the red tests: the pieces above, right, pass (so a red comes from the wrong piece); and skipping
    the bonus token (a row that accepts all drafts keeps its last draft pending and drafts again from there) is
    slower but lossless, and passes too."""
    monkeypatch.setattr(Sampler, "verify", verify_with(**pieces))
    off, hist = off_tables("transformer", 2)
    assert off == [] and hist[0] > 0 and hist[1] > 0
