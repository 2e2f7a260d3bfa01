"""pass@k: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code").

With n samples of a problem of which c pass, pass@k = 1 - C(n-c, k) / C(n, k), computed in
the numerically stable product form 1 - prod_{i=n-c+1..n} (1 - k/i).
"""
import numpy as np

from mtp import UserError


def pass_at_k(n, c, k):
    """Unbiased pass@k of one problem with n samples, c of them correct."""
    if not all(isinstance(v, (int, np.integer)) for v in (n, c, k)):
        raise UserError(f"pass@k needs integers, got n={n!r}, c={c!r}, k={k!r}")
    if k < 1:
        raise UserError(f"pass@k: k must be >= 1, got k={k}")
    if not 0 <= c <= n:
        raise UserError(f"pass@k: the number of correct samples c={c} must lie in 0..n={n}")
    if k > n:
        raise UserError(f"pass@{k} needs at least k={k} samples per problem, but a problem has only n={n}; "
                        f"generate more samples (eval.code.samples) or lower k")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts, k):
    """Mean pass@k over problems; counts: iterable of (n, c) per problem."""
    counts = list(counts)
    if not counts:
        raise UserError("pass@k of zero problems is undefined: no problem was scored")
    return float(np.mean([pass_at_k(n, c, k) for n, c in counts]))


def feasible_k(ks, counts):
    """Split ks into those every problem has enough samples for, and a message for each other one."""
    n_min = min(n for n, _ in counts)
    keep = [k for k in ks if k <= n_min]
    skipped = {f"pass@{k}": f"skipped: k={k} > {n_min} samples of the problem with the fewest" for k in ks if k > n_min}
    return keep, skipped
