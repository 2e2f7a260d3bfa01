"""Paired comparisons of two models scored on the same test items: the difference and its 95% interval.

Paired bootstrap over test items: both models' per-item scores are resampled with the same item
indices (RESAMPLES times, a fixed seed), the statistic of each resample is model A's minus model
B's, and the interval is the 2.5th and 97.5th percentile of those differences (percentile method).
An item's score is a number (0/1 exact match, a problem's pass@k) or a (hits, count) pair for
items holding several scored positions (an induction story): the statistic is then the pooled
rate sum(hits) / sum(count), and resampling whole items keeps the positions of one story together.

Over training seeds (seed_interval): when each model was trained with several seeds, the n>1 model of seed s is
paired with the n=1 model of seed s; each seed's difference d_s comes with its paired-bootstrap interval over
items. The interval is Student's t over seeds, mean(d) +- t(0.975, S-1) * sd(d) / sqrt(S), but never narrower
than the items allow: +- 1.96 * sqrt(v), v the seeds' mean item variance (each seed's bootstrap interval read as
+-1.96 standard errors). Every seed is scored on the same test items, so their sampling noise is shared and does
not average out over seeds: seeds that happen to agree cannot shrink the interval below one seed's.
Why not a bootstrap over seeds: with 3 seeds a percentile bootstrap cannot reach beyond the seeds' own range,
so it excludes 0 whenever the three agree in sign -- one time in four when each seed's sign is a coin flip
(issue #24, benchmarks/RESULTS.md: run D). With one seed it is the paired bootstrap above.

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


# Student's t quantile at 0.975 by degrees of freedom (a 95% two-sided interval); a df between two rows takes the
# lower row's (wider) value, beyond the table the normal 1.96.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}


def t975(df):
    return 1.96 if df > max(T975) else T975[max(k for k in T975 if k <= df)]


def seed_interval(per_seed, resamples=RESAMPLES, seed=SEED, level=LEVEL):
    """per_seed: [(scores of A, scores of B)], one pair per training seed, each over the same items in the same
    order -> {"diff": the mean over seeds of stat(A) - stat(B), "lo", "hi", "items" (the fewest of a seed),
    "resamples", "level", "seeds", "per_seed" (each seed's difference)}; None without a seed. Student's t over
    seeds with the items' variance as a floor (see the module docstring); one seed: paired_bootstrap."""
    if level != LEVEL:
        raise ValueError(f"seed_interval has t quantiles for a {LEVEL:.0%} interval only, got {level}")
    per_seed = [(a, b) for a, b in per_seed if a]
    if not per_seed:
        return None
    single = [paired_bootstrap(a, b, resamples, seed, level) for a, b in per_seed]
    per = [x["diff"] for x in single]
    s = len(per)
    if s == 1:
        return {**single[0], "seeds": 1, "per_seed": per}
    item_var = float(np.mean([((x["hi"] - x["lo"]) / (2 * 1.96)) ** 2 for x in single]))
    half = max(t975(s - 1) * np.std(per, ddof=1) / np.sqrt(s), 1.96 * np.sqrt(item_var))
    mean = float(np.mean(per))
    return {"diff": mean, "lo": mean - half, "hi": mean + half, "items": min(x["items"] for x in single),
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
