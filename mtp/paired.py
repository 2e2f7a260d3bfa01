"""Paired comparisons of two models scored on the same test items: the difference and its 95% interval.

Paired bootstrap over test items: both models' per-item scores are resampled with the same item
indices (RESAMPLES times, a fixed seed), the statistic of each resample is model A's minus model
B's, and the interval is the 2.5th and 97.5th percentile of those differences (percentile method).
An item's score is a number (0/1 exact match, a problem's pass@k) or a (hits, count) pair for
items holding several scored positions (an induction story): the statistic is then the pooled
rate sum(hits) / sum(count), and resampling whole items keeps the positions of one story together.

Over training seeds (seed_bootstrap): when each model was trained with several seeds, the n>1 model of seed s is
paired with the n=1 model of seed s, and the interval is a hierarchical bootstrap: each resample draws the seeds
with replacement, then, within each drawn seed, its items with replacement; the statistic is the mean over the
drawn seeds of stat(A) - stat(B). So the interval holds both the training-run and the test-item noise: with 3
seeds, a resample draws one seed three times 11% of the time, and an interval excludes 0 only when every seed's
difference lies on the same side. With one seed it is the paired bootstrap above.

Pure (numpy only): the report's claims and the tests share it.
"""
import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def align(a, b):
    """Two {item id: score} -> (scores of A, scores of B, ids) over the ids both have, in A's order."""
    ids = [i for i in a if i in b]
    return [a[i] for i in ids], [b[i] for i in ids], ids


def _stat(values, idx):
    """Mean of numbers, or pooled hits / count of (hits, count) pairs, for each row of resample indices."""
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        return v[idx].mean(axis=-1)
    hits, count = v[:, 0][idx].sum(axis=-1), v[:, 1][idx].sum(axis=-1)
    return np.divide(hits, count, out=np.zeros_like(hits), where=count > 0)


def paired_bootstrap(a, b, resamples=RESAMPLES, seed=SEED, level=LEVEL):
    """Per-item scores of A and of B (same items, same order) -> {"diff": stat(A) - stat(B), "lo", "hi",
    "items", "resamples", "level"}; None without items. See the module docstring."""
    if len(a) != len(b):
        raise ValueError(f"paired bootstrap needs the same items for both models, got {len(a)} and {len(b)}")
    if not a:
        return None
    n = len(a)
    full = np.arange(n)[None, :]
    diff = float(_stat(a, full)[0] - _stat(b, full)[0])
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    d = _stat(a, idx) - _stat(b, idx)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(d, [tail, 100 - tail])
    return {"diff": diff, "lo": float(lo), "hi": float(hi), "items": n, "resamples": resamples, "level": level}


def seed_bootstrap(per_seed, resamples=RESAMPLES, seed=SEED, level=LEVEL):
    """per_seed: [(scores of A, scores of B)], one pair per training seed, each over the same items in the same
    order -> paired_bootstrap's dict over all seeds (see the module docstring), with "seeds" (their number),
    "per_seed" (each seed's difference) and "items" (the fewest items of a seed); None without a seed."""
    per_seed = [(a, b) for a, b in per_seed if a]
    if not per_seed:
        return None
    single = [paired_bootstrap(a, b, resamples, seed, level) for a, b in per_seed]
    if len(per_seed) == 1:
        return {**single[0], "seeds": 1, "per_seed": [single[0]["diff"]]}
    rng = np.random.default_rng(seed)
    s = len(per_seed)
    diffs = np.empty((s, resamples, s))  # diffs[j]: item resamples of seed j, one per (resample, draw slot)
    for j, (a, b) in enumerate(per_seed):
        idx = rng.integers(0, len(a), size=(resamples * s, len(a)))
        diffs[j] = (_stat(a, idx) - _stat(b, idx)).reshape(resamples, s)
    drawn = rng.integers(0, s, size=(resamples, s))
    d = diffs[drawn, np.arange(resamples)[:, None], np.arange(s)[None, :]].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(d, [tail, 100 - tail])
    per = [x["diff"] for x in single]
    return {"diff": float(np.mean(per)), "lo": float(lo), "hi": float(hi), "items": min(x["items"] for x in single),
            "resamples": resamples, "level": level, "seeds": s, "per_seed": per}


def sign(ci):
    """+1 when the interval lies above zero, -1 below, 0 when it includes zero (None: no interval)."""
    if ci is None:
        return None
    return 1 if ci["lo"] > 0 else -1 if ci["hi"] < 0 else 0


def fmt(ci, digits=3):
    """'+0.120 (95% CI [+0.050, +0.190], 400 items)'; over seeds: '+0.120 (95% CI [...], 3 seeds x 200 items,
    per seed +0.100 +0.130 +0.130)'."""
    seeds = ci.get("seeds", 1)
    what = f"{ci['items']} items" if seeds == 1 else (
        f"{seeds} seeds x {ci['items']} items, per seed " + " ".join(f"{x:+.{digits}f}" for x in ci["per_seed"]))
    return f"{ci['diff']:+.{digits}f} ({ci['level']:.0%} CI [{ci['lo']:+.{digits}f}, {ci['hi']:+.{digits}f}], {what})"
