"""Decoding: greedy via the KV cache == naive recompute; self-speculative == greedy (lossless);
cache rollback; exact tokens-per-forward on hand-made models; the stage; error cases.

Models are float32 and tiny. Two kinds:
- `random_model`: default init with the unembedding scaled up (logit gaps >> float rounding,
  so argmax never sits on a near-tie); its heads disagree, so drafts are (almost) always rejected.
- `shift_model`: hand-made, head i predicts token (x + offset_i) mod V from the current token x
  (one-hot embedding, identity trunk, each head a permutation); with offset_i = i every draft is
  right. `noise` adds Gaussian noise to every weight, which gives a mix of accepted lengths and
  ragged progress across rows: the lossless tests run on these over several seeds.
"""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mtp import UserError
from mtp.decoding import engine as D
from mtp.stages import decode as DS
from mtp.decoding import timing as DT
from mtp import measure
from mtp.io import sha256_file
from mtp.nn.model import ModelConfig, MTPModel

V = 16


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny matmuls on one thread


def random_model(n, head_type="transformer", seed=0, V=V, max_seq_len=256, n_kv_heads=None):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=V, dim=32, n_layers=n + 2, n_attn_heads=4 if n_kv_heads else 2, n_heads=n,
                      head_type=head_type, max_seq_len=max_seq_len, n_kv_heads=n_kv_heads)
    m = MTPModel(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(100)
    return m


def shift_model(n, head_type="transformer", offsets=None, noise=0.0, seed=0, max_seq_len=256, n_kv_heads=None):
    """Head i (1-based) predicts (x + offsets[i-1]) mod V from the current token x; offsets default 1..n.
    n_kv_heads: grouped-query attention (4 query heads sharing n_kv_heads key/value heads)."""
    offsets = offsets or list(range(1, n + 1))
    dim = 32
    cfg = ModelConfig(vocab_size=V, dim=dim, n_layers=n + 2 if head_type == "transformer" else 2,
                      n_attn_heads=4 if n_kv_heads else 2, n_kv_heads=n_kv_heads, n_heads=n, head_type=head_type,
                      max_seq_len=max_seq_len)
    torch.manual_seed(seed)
    m = MTPModel(cfg).eval()
    eye = torch.eye(dim)
    with torch.no_grad():
        m.tok_emb.weight.copy_(eye[:V])  # one-hot tokens
        m.lm_head.weight.copy_(10 * eye[:V])
        for block in m.trunk:  # identity trunk: z = emb(x)
            block.attn.wo.weight.zero_()
            block.mlp.w2.weight.zero_()
        for head, off in zip(m.heads, offsets):
            perm = torch.zeros(dim, dim)
            perm[(torch.arange(V) + off) % V, torch.arange(V)] = 1.0  # e_x -> e_{x+off}
            if head_type == "linear":
                head.proj.weight.copy_(perm)
                continue
            head.attn.wo.weight.zero_()
            for w in (head.mlp.w1.weight, head.mlp.w3.weight, head.mlp.w2.weight):
                w.zero_()
            head.mlp.w1.weight[:dim] = eye  # hidden unit x fires for token x only
            head.mlp.w3.weight[:dim] = eye
            head.mlp.w2.weight[:, :dim] = perm  # ... and writes e_{x+off}, which outweighs the residual e_x
        g = torch.Generator().manual_seed(seed)
        for p in m.parameters():
            p.add_(noise * torch.randn(p.shape, generator=g))
    return m


def naive_greedy(model, prompt, max_new_tokens):
    """Greedy head-1 decoding by recomputing the whole sequence with model.forward (no cache)."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            seq.append(int(model(torch.tensor([seq]), heads=[0])[0][0, -1].argmax()))
    return seq[len(prompt):]


def prompts_for(seed, count=5):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, 12, (count,), generator=g).tolist()
    return [torch.randint(0, V, (L,), generator=g).tolist() for L in lens]


@pytest.mark.parametrize("head_type", ["transformer", "linear"])
def test_cached_greedy_matches_naive_recompute(head_type):
    for model in (random_model(2, head_type), shift_model(2, head_type, noise=0.1, seed=3)):
        prompts = prompts_for(1, count=3)
        out, stats = D.decode(model, prompts, 12, draft_tokens=0, batch_size=3)
        assert out == [naive_greedy(model, p, 12) for p in prompts]
        assert stats.tokens_per_forward == 1.0


@pytest.mark.parametrize("head_type", ["transformer", "linear"])
@pytest.mark.parametrize("n", [2, 4, 8])
def test_speculative_is_lossless(n, head_type):
    hist = [0] * n
    runs = [(shift_model(n, head_type, noise=0.1, seed=seed), seed) for seed in range(3)]
    runs.append((random_model(n, head_type, seed=0), 0))
    for model, seed in runs:
        prompts = prompts_for(seed)
        ar, _ = D.decode(model, prompts, 20, draft_tokens=0, batch_size=1)
        for k, bs in [(n - 1, 1), (n - 1, 5)] + [(1, 5)] * (seed == 0 and n > 2):  # batch 1; a ragged batch
            spec, stats = D.decode(model, prompts, 20, draft_tokens=k, batch_size=bs)
            assert spec == ar, (seed, k, bs)
            if k == n - 1:
                hist = [h + s for h, s in zip(hist, stats.accepted_hist)]
    assert D.decode(model, prompts, 20, draft_tokens=0, batch_size=5)[0] == ar
    # the runs above exercised rejection, partial and full acceptance
    assert hist[0] > 0 and sum(hist[1:]) > 0 and sum(1 for h in hist if h) >= min(n, 3), hist


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_grouped_query_attention_is_lossless_in_ragged_batches(n_kv_heads):
    """Grouped-query attention (4 query heads on n_kv_heads key/value heads) through the KV cache and the fused
    heads: cached greedy equals the naive recompute, speculative equals greedy at batch 1 and in a ragged batch."""
    hist = [0] * 4
    for seed in range(3):
        model = shift_model(4, noise=0.1, seed=seed, n_kv_heads=n_kv_heads)
        assert model.trunk[0].attn.wk.weight.shape == (n_kv_heads * 8, 32)
        prompts = prompts_for(seed)
        ar, _ = D.decode(model, prompts, 20, draft_tokens=0, batch_size=5)
        assert ar == [naive_greedy(model, p, 20) for p in prompts]
        for k, bs in [(3, 1), (3, 5), (2, 5)]:
            spec, stats = D.decode(model, prompts, 20, draft_tokens=k, batch_size=bs)
            assert spec == ar, (seed, k, bs)
            hist = [h + s for h, s in zip(hist, stats.accepted_hist)] if k == 3 else hist
    assert hist[0] > 0 and sum(hist[1:]) > 0, hist  # rejections and acceptances both exercised


def test_decoding_heads_compute_the_models_head_states():
    """What decoding runs for heads 1..k+1 (the head type's proposer: mtp.nn.heads.proposer.Proposer, one by one, for
    medusa) equals the model's own head states (the training path), so drafts are the heads' real predictions."""
    model = random_model(4, "medusa", seed=5)
    idx = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cos, sin = model.rope(9)
        z = model.forward_trunk(idx, cos, sin)
        torch.testing.assert_close(model.behaviour.proposer(model, 3)(z, cos, sin),
                                   torch.stack(model.head_states(z, cos, sin)))


def cyclic_medusa(n, steps=150):
    """A medusa model trained (memory-efficient backward) on the cycle 0, 1, .., V-1, 0, ..: its drafts are right."""
    from mtp.training.step import head_targets, mtp_backward
    model = random_model(n, "medusa", seed=0)
    with torch.no_grad():
        model.lm_head.weight.div_(100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        start = torch.randint(0, V, (8, 1), generator=torch.Generator().manual_seed(step))
        x, ys = head_targets((start + torch.arange(24 + n)) % V, n)
        opt.zero_grad()
        mtp_backward(model, x, ys)
        opt.step()
    return model.eval()


@pytest.mark.parametrize("n", [2, 4])
def test_medusa_speculative_is_lossless(n):
    """Medusa heads (heads 2..n on head 1's normed state, no KV cache of their own): speculative output equals
    greedy and the naive recompute, on a model whose drafts are mostly right (trained on a cycle) and on random
    ones (drafts mostly wrong)."""
    accepted = []
    for model, seed in [(cyclic_medusa(n), 0), *((random_model(n, "medusa", seed=s), s) for s in (1, 2))]:
        prompts = prompts_for(seed)
        ar, _ = D.decode(model, prompts, 20, draft_tokens=0, batch_size=1)
        assert ar == [naive_greedy(model, p, 20) for p in prompts]
        for bs in (1, 5):
            spec, stats = D.decode(model, prompts, 20, draft_tokens=n - 1, batch_size=bs)
            assert spec == ar, (seed, bs)
        accepted.append(stats.tokens_per_forward)
    assert accepted[0] > 1 + 0.5 * (n - 1) and min(accepted[1:]) < accepted[0], accepted


def test_ragged_rows_progress_independently():
    model = shift_model(4, noise=0.1, seed=1)
    prompts = prompts_for(1, count=6)
    per_prompt = D.acceptance_counts(model, prompts, 20)
    assert len({c["num_drafts"] for c in per_prompt}) > 1  # rows need different numbers of forwards
    out, stats = D.decode(model, prompts, 20, draft_tokens=3, batch_size=6)
    assert out == [c["tokens"] for c in per_prompt]
    # no row waits for another: row-steps of the batch = sum of each prompt's own forwards
    assert stats.num_drafts == sum(c["num_drafts"] for c in per_prompt)
    assert stats.forwards == max(c["num_drafts"] for c in per_prompt)
    assert sum(stats.num_accepted_tokens_per_pos) == sum(c["num_accepted_tokens"] for c in per_prompt)


@pytest.mark.parametrize("head_type, n_kv_heads", [("transformer", None), ("linear", None), ("transformer", 2)])
def test_fused_draft_heads_equal_the_separate_heads(head_type, n_kv_heads):
    """model.FusedHeads (heads 1..k+1 as one block for decoding) computes what each head computes."""
    from mtp.nn.heads.parallel import FusedHeads
    model = random_model(4, head_type, seed=3, n_kv_heads=n_kv_heads)
    with torch.no_grad():  # non-trivial norm weights: their folding into the matrices is checked too
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    idx = torch.randint(0, V, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cos, sin = model.rope(11)
        z = model.forward_trunk(idx, cos, sin)
        fused = FusedHeads(model.heads, model.cfg)(z, cos, sin)  # (4, B, T, C)
        for j in range(4):
            torch.testing.assert_close(fused[j], model.heads[j](z, cos, sin), atol=1e-5, rtol=1e-4)


def _plain_cache(model, seqs, k):
    """A cache filled by feeding each row's tokens one at a time through the trunk and heads 1..k+1."""
    caches = []
    for s in seqs:
        cache = D.KVCache(model, 1, len(s) + 1, k)
        for t in s:
            D.forward(model, cache, torch.tensor([[t]]))
        caches.append(cache)
    return caches


@pytest.mark.parametrize("head_type", ["transformer", "linear"])
def test_rollback_leaves_cache_as_plain_decoding(head_type):
    model, k = shift_model(4, head_type, noise=0.1, seed=2), 3
    prompts = prompts_for(2, count=4)
    B = len(prompts)
    cache = D.KVCache(model, B, 64, k)
    with torch.inference_mode():
        x, drafts = D.start(model, cache, prompts, k)
        seqs = [list(p) for p in prompts]  # tokens whose K/V the cache must hold
        pending = x.tolist()
        rolled = 0
        for _ in range(6):
            g, a, x, drafts = D.spec_step(model, cache, x, drafts)
            rolled += int((k - a).sum())
            for b in range(B):
                seqs[b] += [pending[b]] + g[b, :int(a[b])].tolist()
            pending = x.tolist()
        plain = _plain_cache(model, seqs, k)
    assert rolled > 0  # some rows really rolled back
    assert cache.lengths.tolist() == [len(s) for s in seqs]
    assert len(set(cache.lengths.tolist())) > 1  # ragged
    for b, ref in enumerate(plain):
        c = len(seqs[b])
        assert len(cache.heads) == len(ref.heads) == (0 if head_type == "linear" else 1)  # linear heads: no cache
        for mine, theirs in zip(cache.trunk + cache.heads, ref.trunk + ref.heads):
            torch.testing.assert_close(mine.k[b, :, :c], theirs.k[0, :, :c], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(mine.v[b, :, :c], theirs.v[0, :, :c], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head_type", ["transformer", "linear"])
def test_tokens_per_forward_exact(head_type):
    n, N = 4, 21
    right = shift_model(n, head_type)
    wrong = shift_model(n, head_type, offsets=[1, 3, 4, 5])  # heads 2..4 always off by one
    half = shift_model(n, head_type, offsets=[1, 2, 4, 5])  # head 2 right, heads 3, 4 wrong
    prompts = [[3], [0, 5, 9], [7, 7]]
    expected = [[(p[-1] + i) % V for i in range(1, N + 1)] for p in prompts]
    for k in (1, 2, 3):
        out, s = D.decode(right, prompts, N, draft_tokens=k, batch_size=3)
        assert out == expected
        assert s.tokens_per_forward == k + 1
        assert s.accept_rate_per_pos == [1.0] * k
        assert s.accepted_hist == [0] * k + [s.num_drafts]
        assert s.num_drafts == len(prompts) * math.ceil((N - 1) / (k + 1))  # the prefill gave the first token
    out, s = D.decode(wrong, prompts, N, draft_tokens=3, batch_size=3)
    assert out == expected and s.tokens_per_forward == 1.0 and s.accept_rate_per_pos == [0.0] * 3
    assert s.num_drafts == len(prompts) * (N - 1)
    out, s = D.decode(half, prompts, N, draft_tokens=3, batch_size=2)
    assert out == expected and s.tokens_per_forward == 2.0 and s.accept_rate_per_pos == [1.0, 0.0, 0.0]
    counts = D.acceptance_counts(right, [[3]], 10)[0]
    # 9 tokens after the prefill's first: 3 forwards of 4; the last accepts 3 drafts though 2 are dropped
    assert counts["num_drafts"] == 3 and counts["num_accepted_tokens"] == 9
    assert counts["num_accepted_tokens_per_pos"] == [3, 3, 3] and counts["num_draft_tokens"] == 9
    assert counts["tokens"] == expected[0][:10]


def test_stops_at_eod_and_context_end():
    model = shift_model(4, max_seq_len=12)
    for k in (0, 3):
        out, _ = D.decode(model, [[3], [9, 10]], 20, eod_id=7, draft_tokens=k, batch_size=2)
        assert out == [[4, 5, 6], [11, 12, 13, 14, 15, 0, 1, 2, 3, 4]]  # second: the context (12) is full
        out, _ = D.decode(model, [[6]], 5, eod_id=7, draft_tokens=k)
        assert out == [[]]
    assert D.generate(model, [[3], [1]], 3, eod_id=5) == [[4], [2, 3, 4]]


def test_generate_sampling_is_seeded():
    model = random_model(2, V=16)
    with torch.no_grad():
        model.lm_head.weight.div_(100)  # flat distributions
    prompts = [[1, 2], [3]]
    a = D.generate(model, prompts, 10, eod_id=None, temperature=1.0, seed=5, batch_size=2)
    assert a == D.generate(model, prompts, 10, eod_id=None, temperature=1.0, seed=5, batch_size=2)
    assert a != D.generate(model, prompts, 10, eod_id=None, temperature=1.0, seed=6, batch_size=2)
    assert all(len(o) == 10 and all(0 <= t < 16 for t in o) for o in a)
    assert D.generate(model, [], 10, eod_id=0) == []


def test_errors():
    model = random_model(2, max_seq_len=16)
    with pytest.raises(UserError, match="draft_tokens"):
        D.decode(model, [[1]], 4, draft_tokens=2)
    with pytest.raises(UserError, match="max_seq_len"):
        D.decode(model, [list(range(16))], 4)
    with pytest.raises(UserError, match="empty"):
        D.decode(model, [[1], []], 4)
    with pytest.raises(UserError, match="vocabulary"):
        D.decode(model, [[V]], 4)
    with pytest.raises(UserError, match="no prompts"):
        DT.bench(model, [], [1], 4, 1)
    cache = D.KVCache(model, 1, 8)
    with pytest.raises(ValueError, match="rollback"):
        cache.rollback(1)
    assert cache.lengths.tolist() == [0]
    with pytest.raises(ValueError, match="overflow"):
        D.forward(model, cache, torch.zeros(1, 9, dtype=torch.long))


def test_bench_reports_each_batch_size():
    model = shift_model(4, noise=0.1, seed=0)
    r = DT.bench(model, prompts_for(0, count=4), [1, 2], 12, repeats=3)
    assert [row["batch_size"] for row in r["per_batch"]] == [1, 2]
    assert r["num_prompts"] == r["timed_prompts"] == 4  # 3 of 4 continuations loop (below): degenerate, all timed
    for row in r["per_batch"]:
        assert row["lossless"] and row["speedup"] > 0 and row["tokens_per_forward"] >= 1
        assert row["ar"]["new_tokens"] == row["spec"]["new_tokens"] == 4 * 12
        for side in (row["ar"], row["spec"]):  # one figure per interleaved round
            assert len(side["tokens_per_s_all"]) == len(side["seconds_all"]) == 3
            assert side["tokens_per_s_min"] <= side["tokens_per_s"] <= side["tokens_per_s_max"]
        spread = row["speedup_spread"]
        assert spread["min"] <= row["speedup"] <= spread["max"] and isinstance(spread["unstable"], bool)
        per_round = [s / a for s, a in zip(row["spec"]["tokens_per_s_all"], row["ar"]["tokens_per_s_all"])]
        assert row["speedup"] == pytest.approx(sorted(per_round)[1])  # the median of the per-round ratios
        assert r["metrics"][f"decode_speedup_unstable_b{row['batch_size']}"] == float(spread["unstable"])
    for name in ("decode_speedup_b1", "decode_tokens_per_forward_b2", "decode_ar_tokens_per_s_b1",
                 "decode_spec_tokens_per_s_b2", "decode_accept_rate_pos3"):
        assert name in r["metrics"]
    # quality of the greedy outputs; the noise breaks this model's counting: 3 of 4 outputs get stuck in short loops
    greedy = D.decode(model, prompts_for(0, count=4), 12, draft_tokens=0)[0]
    assert r["quality"] == measure.output_quality(greedy) and r["quality"]["degenerate_prompts"] == 3
    assert r["metrics"]["decode_degenerate"] == 1.0 and r["metrics"]["decode_degenerate_prompts"] == 3
    assert r["metrics"]["decode_distinct_tokens_min"] == min(len(set(o)) for o in greedy)
    base = DT.bench(shift_model(1), [[1, 2]], [1], 4, repeats=1)  # n = 1: quality only, untimed
    assert not base["speculative"] and "n=1" in base["note"] and base["per_batch"] == [] and base["timing"] is None
    assert base["tokens_per_forward_by_k"] == []
    assert base["quality"] == measure.output_quality(D.decode(shift_model(1), [[1, 2]], 4)[0])
    assert "decode_speedup_b1" not in base["metrics"] and "decode_ar_tokens_per_s_b1" not in base["metrics"]
    assert r["sampling"] is None and DT.bench(shift_model(1), [[1, 2]], [1], 4, 1, temperature=0.8)["sampling"] is None


def test_bench_times_speculative_sampling_beside_greedy():
    """decode.sample_temperature: AR and speculative sampling at the first batch size, in the same rounds."""
    r = DT.bench(shift_model(4, noise=0.1, seed=0), prompts_for(0, count=4), [1, 2], 12, repeats=2, temperature=0.8)
    s = r["sampling"]  # on every prompt: 3 of 4 continuations loop, the output is degenerate (not scored)
    assert s["temperature"] == 0.8 and s["batch_size"] == 1 and s["spec"]["new_tokens"] == s["ar"]["new_tokens"] == 48
    assert len(s["spec"]["tokens_per_s_all"]) == 2 and s["speedup"] > 0 and 1 <= s["tokens_per_forward"] <= 4
    assert len(s["spec"]["accept_rate_per_pos"]) == 3 and s["speedup_spread"]["min"] <= s["speedup"]
    assert r["metrics"]["decode_sample_tokens_per_forward_b1"] == s["tokens_per_forward"]


def test_bench_flags_degenerate_output():
    # head 1 repeats its input token and every draft agrees (k+1 tokens per forward, nothing learned): every
    # continuation is degenerate, so is the output; its figures (of every prompt) are diagnostics, never scored
    model = shift_model(4, offsets=[0, 0, 0, 0])
    r = DT.bench(model, prompts_for(0, count=4), [1], 12, repeats=1)
    assert r["per_batch"][0]["tokens_per_forward"] == 4.0 and r["per_batch"][0]["lossless"]
    assert r["timed_prompts"] == 4 and r["quality"]["measured"] == [0, 1, 2, 3]
    q = r["quality"]
    assert q["degenerate"] and q["distinct_tokens"] == [1] * 4 and "degenerate" in q["reason"] and q["kept"] == []
    assert r["metrics"]["decode_degenerate"] == 1.0 and r["metrics"]["decode_distinct_tokens_min"] == 1
    # the clean shift model counts up: 12 distinct tokens per prompt, every draft right at every k
    r = DT.bench(shift_model(4), prompts_for(0, count=4), [1], 12, repeats=1)
    assert r["per_batch"][0]["tokens_per_forward"] == 4.0
    assert [(x["k"], x["tokens_per_forward"]) for x in r["tokens_per_forward_by_k"]] == [(1, 2.0), (2, 3.0), (3, 4.0)]
    assert not r["quality"]["degenerate"] and r["quality"]["distinct_tokens"] == [12] * 4
    assert r["metrics"]["decode_degenerate"] == 0.0 and r["metrics"]["decode_distinct_tokens_min"] == 12


def test_bench_measures_only_the_kept_prompts():
    """Prompts whose greedy continuation is degenerate are left out of every speed figure: the timed runs and tokens
    per forward at every k are those of the kept prompts alone; the model stays scored (half its prompts kept)."""
    model, prompts = shift_model(4, noise=0.1, seed=1), prompts_for(1, count=6)
    r = DT.bench(model, prompts, [1, 3], 24, repeats=1)
    q = r["quality"]
    assert q["kept"] == [0, 4, 5] and [d["prompt"] for d in q["dropped"]] == [1, 2, 3] and not q["degenerate"]
    assert all(d["why"] for d in q["dropped"]) and r["timed_prompts"] == 3
    kept = [prompts[i] for i in q["kept"]]
    alone = D.decode(model, kept, 24, draft_tokens=3, batch_size=1)[1].tokens_per_forward
    every = D.decode(model, prompts, 24, draft_tokens=3, batch_size=1)[1].tokens_per_forward
    assert alone != every  # the dropped prompts would change the figure
    for row in r["per_batch"]:
        assert row["ar"]["new_tokens"] == row["spec"]["new_tokens"] == 3 * 24 and row["lossless"]
    assert r["per_batch"][0]["tokens_per_forward"] == alone
    # tokens per forward at every k: per kept prompt [tokens, forwards], decoded alone
    by_k = r["tokens_per_forward_by_k"]
    assert [x["k"] for x in by_k] == [1, 2, 3] and r["metrics"]["decode_tokens_per_forward_k3"] == alone
    for x in by_k:
        counts = D.acceptance_counts(model, kept, 24, None, x["k"])
        assert x["per_prompt"] == [[c["num_drafts"] + c["num_accepted_tokens"], c["num_drafts"]] for c in counts]
        tokens, forwards = map(sum, zip(*x["per_prompt"]))
        assert x["tokens_per_forward"] == tokens / forwards
    assert by_k[2]["tokens_per_forward"] == alone and by_k[0]["tokens_per_forward"] < alone


def _summary(n, speedup_b1, degenerate=False, batches=(1, 8)):
    return {"n": n, "quality": {"degenerate": degenerate, "reason": "degenerate output: 3 of 3" if degenerate else ""},
            "per_batch": [{"batch_size": bs, "speedup": speedup_b1 / bs, "tokens_per_forward": 3.0,
                           "speedup_spread": {"unstable": bs == 8}} for bs in batches]}


def test_bench_study_headline_skips_degenerate_and_small_n():
    h = DS.headline({"a/1M-n4": _summary(4, 3.0, degenerate=True), "a/1M-n2": _summary(2, 5.0),
                     "a/small-n4": _summary(4, 1.5), "b/deep-n8": _summary(8, 2.0)})
    assert h["model"] == "b/deep-n8" and h["speedup_b1"] == 2.0 and h["speedup_b8"] == 0.25
    assert h["tokens_per_forward_b1"] == 3.0 and h["unstable_b1"] is False and h["unstable_b8"] is True
    assert h["note"] == ""
    h = DS.headline({"a/1M-n4": _summary(4, 3.0, degenerate=True), "a/1M-n2": _summary(2, 5.0)})
    assert h["model"] is None and h["speedup_b1"] is None and h["tokens_per_forward_b8"] is None
    assert "degenerate" in h["note"] and "a/1M-n4" in h["note"]
    h = DS.headline({"a/1M-n2": _summary(2, 5.0)})
    assert h["model"] is None and "n >= 4" in h["note"]
    h = DS.headline({"a/1M-n4": _summary(4, 3.0, batches=(1, 2))})
    assert h["speedup_b1"] == 3.0 and h["speedup_b8"] is None and "8" in h["note"]


class FakeRun:
    def __init__(self):
        self.metrics, self.tags_, self.artifacts, self.params_ = {}, {}, [], {}

    def log(self, metrics, step=None):
        self.metrics.update(metrics)

    def tags(self, tags):
        self.tags_.update(tags)

    def params(self, params):
        self.params_.update(params)

    def artifact(self, path, folder=None):
        self.artifacts.append(str(path))


@pytest.mark.parametrize("n", [1, 2])
def test_stage_writes_decode_json(tmp_path, monkeypatch, capsys, n):
    import contextlib

    import yaml

    from mtp import checkpoint, config, tracking
    data_dir = tmp_path / "results" / "data" / "toy"
    data_dir.mkdir(parents=True)
    val = (np.arange(400) % V).astype(np.uint16)
    val.tofile(data_dir / "val.bin")
    (data_dir / "meta.json").write_text(json.dumps({"dtype": "uint16", "tokens_val": 400, "bytes_val": 400,
                                                    "vocab_size": V, "sha256": {"val.bin": sha256_file(data_dir / "val.bin")}}))
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "results": str(tmp_path / "results"), "train": {},
        "model_presets": {"toy": {"dim": 32, "n_layers": 6 if n > 1 else 2, "n_attn_heads": 2}},
        "datasets": {"toy": {"source": {"kind": "stdlib"}}},
        "sweeps": [{"dataset": "toy", "sizes": ["toy"], "n_heads": [n]}],
        "decode": {"num_prompts": 3, "prompt_len": 5, "max_new_tokens": 12, "batch_sizes": [1, 2], "repeats": 1}}))
    cfg = config.load(cfg_path)
    model_dir = config.find_model(cfg, "toy", "toy", n).dir
    model = shift_model(n, noise=0.05) if n > 1 else shift_model(1)
    checkpoint.save_model(model_dir, model, {"dataset": "toy", "size": "toy", "n": n, "data_dir": str(data_dir),
                                             "train_run_id": "abc"})
    runs = []

    @contextlib.contextmanager
    def fake_child_run(cfg, stage, **keys):
        runs.append((stage, keys, FakeRun()))
        yield runs[-1][2]

    monkeypatch.setattr(tracking, "child_run", fake_child_run)
    DS.run(SimpleNamespace(config=str(cfg_path), model=None, dataset="toy", size="toy", n_heads=n, device="cpu"))
    result = json.loads((tmp_path / "results" / "models" / "toy" / f"toy-n{n}" / "decode.json").read_text())
    (stage, keys, run), = runs
    assert stage == "decode" and keys == config.find_model(cfg, "toy", "toy", n).run_keys()
    assert run.tags_["mtp.train_run_id"] == "abc" and run.artifacts[0].endswith("decode.json")
    assert run.metrics == pytest.approx(result["metrics"])
    assert [r["batch_size"] for r in result["per_batch"]] == ([1, 2] if n > 1 else [])
    if n == 1:  # quality only, untimed
        assert not result["speculative"] and "decode_degenerate" in run.metrics
        assert not any(k.startswith("decode_ar_tokens_per_s") for k in run.metrics)
        with pytest.raises(UserError, match="no trained model with n > 1"):
            DS.bench_study(cfg)
    else:
        assert result["per_batch"][0]["lossless"] and "decode_speedup_b2" in run.metrics
        assert result["draft_tokens"] == 1 and [x["k"] for x in result["tokens_per_forward_by_k"]] == [1]
        assert result["timed_prompts"] == 3 and run.metrics["decode_tokens_per_forward_k1"] > 1
        study = DS.bench_study(cfg)
        summary = study["models"]["toy/toy-n2"]
        assert [r["batch_size"] for r in summary["per_batch"]] == [1, 2]
        assert summary["per_batch"][0]["tokens_per_forward"] >= 1
        assert "unstable" in summary["per_batch"][0]["speedup_spread"] and "degenerate" in summary["quality"]
        assert list(summary["tokens_per_forward_by_k"]) == [1]
        assert study["model"] is None and study["speedup_b1"] is None and "n >= 4" in study["note"]
    # the models count up: 12 distinct tokens, no loop, every prompt kept
    assert not result["quality"]["degenerate"] and result["quality"]["kept"] == [0, 1, 2]
    assert run.metrics["decode_degenerate"] == 0.0 and "DEGENERATE OUTPUT" not in capsys.readouterr().out


# Speculative sampling's distribution over many steps (k = 1..3, every head type, the wrong rules refused):
# tests/test_spec_sampling.py.


def test_speculative_sampling_near_the_end_of_the_context():
    """Where the block narrows to fewer drafts (positions stay below max_seq_len), speculative sampling verifies the
    shorter block and stops at the context's end, as greedy decoding does."""
    model = random_model(3, seed=2, max_seq_len=24)
    prompts = [list(range(1, 15)), [t % V for t in range(3, 20)]]
    out, stats = D.decode(model, prompts, 30, draft_tokens=2, batch_size=2, temperature=0.8, seed=1)
    assert [len(o) for o in out] == [24 - 14, 24 - 17] and stats.forwards > 0


def test_few_rows_products_keep_decoding_exact(monkeypatch):
    """mtp.nn.model.few_rows_linear (a CPU decode's x @ w.T as w @ x.T for a handful of rows; only for matrices of >=
    FEW_ROWS_MIN entries, so here forced on for the tiny models) equals F.linear / bmm, and with it the fused heads
    equal the separate heads and speculative decoding stays lossless (greedy output = the full forward's argmax)."""
    import torch.nn.functional as F
    from mtp.nn import model as M
    monkeypatch.setattr(M, "FEW_ROWS_MIN", 0)
    g = torch.Generator().manual_seed(0)
    w, w3 = torch.randn(40, 24, generator=g), torch.randn(3, 40, 24, generator=g)
    with torch.inference_mode():
        for shape in [(1, 24), (1, 1, 24), (2, 3, 24), (5, 24), (33, 24)]:
            x = torch.randn(*shape, generator=g)
            torch.testing.assert_close(M.few_rows_linear(x, w), F.linear(x, w))
        for R in (1, 2, 5, 40):
            x = torch.randn(3, R, 24, generator=g)
            torch.testing.assert_close(M.few_rows_linear(x, w3), torch.bmm(x, w3.transpose(1, 2)))
    test_fused_draft_heads_equal_the_separate_heads("transformer", 2)
    test_fused_draft_heads_equal_the_separate_heads("linear", None)
    test_cached_greedy_matches_naive_recompute("transformer")
    model, prompts = shift_model(4, noise=0.1, seed=1, n_kv_heads=2), prompts_for(1)
    ar, _ = D.decode(model, prompts, 20, draft_tokens=0, batch_size=1)
    assert ar == [naive_greedy(model, p, 20) for p in prompts]
    for k, bs in [(3, 1), (3, 5), (1, 5)]:
        assert D.decode(model, prompts, 20, draft_tokens=k, batch_size=bs)[0] == ar, (k, bs)


def test_humaneval_prompts_as_the_code_benchmark_renders_them(tmp_path):
    """decode.prompts: humaneval-templated gives the decode and vLLM stages HumanEval prompts in the code benchmark's
    template (eval.code.prompt_templates.humaneval); humaneval gives them raw."""
    from mtp.decoding.timing import study_prompts
    from mtp.evals.code import humaneval_problems
    from mtp.tokenizer import Tokenizer, byte_tokenizer
    tok = Tokenizer(byte_tokenizer())
    tok.save(tmp_path / "tokenizer.json")
    cfg = {"decode": {"prompts": "humaneval", "num_prompts": 2},
           "eval": {"code": {"prompt_templates": {"humaneval": "<user>\n{prompt}</user>\n```python\n"}}}}
    first = humaneval_problems()[0]["prompt"]
    raw = study_prompts(cfg, tmp_path)
    cfg["decode"]["prompts"] = "humaneval-templated"
    templated = study_prompts(cfg, tmp_path)
    assert len(raw) == len(templated) == 2
    assert tok.decode(raw[0]) == first
    assert tok.decode(templated[0]) == f"<user>\n{first}</user>\n```python\n"
