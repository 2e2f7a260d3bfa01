"""Paired comparisons of two models scored on the same test items: the difference and its 95% interval.

Paired bootstrap over test items: both models' per-item scores are resampled with the same item
indices (RESAMPLES times, a fixed seed), the statistic of each resample is model A's minus model
B's, and the interval is the 2.5th and 97.5th percentile of those differences (percentile method).
An item's score is a number (0/1 exact match, a problem's pass@k) or a (hits, count) pair for
items holding several scored positions (an induction story): the statistic is then the pooled
rate sum(hits) / sum(count), and resampling whole items keeps the positions of one story together.

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


def sign(ci):
    """+1 when the interval lies above zero, -1 below, 0 when it includes zero (None: no interval)."""
    if ci is None:
        return None
    return 1 if ci["lo"] > 0 else -1 if ci["hi"] < 0 else 0


def fmt(ci, digits=3):
    """'+0.120 (95% CI [+0.050, +0.190], 400 items)'."""
    return (f"{ci['diff']:+.{digits}f} ({ci['level']:.0%} CI [{ci['lo']:+.{digits}f}, {ci['hi']:+.{digits}f}], "
            f"{ci['items']} items)")
