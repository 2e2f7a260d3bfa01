"""Verdict kinds, the paired-comparison rule every section shares, and the claim record.

Sections build claims with `claim(...)`: the evidence (`ours`), the pure rule that judges it (a verdict_*
function whose docstring states the rule) and its arguments; mtp.report.claims applies the rule. Paired
comparisons (pass@k, induction, polynomial per m: an n>1 model vs the n=1 model of its size and training seed)
carry a 95% interval over training seeds and test items (mtp.paired.seed_interval: Student's t over the seeds'
differences, never narrower than the items' noise); "reproduced" and "contradicted" need it to exclude 0 with
at least MIN_SEEDS (3) training seeds per model; with fewer the verdict is "one seed: exploratory" (or "2 seeds:
..."), whatever the interval.
The paper gives points without intervals: the noise we allow is our own, over training runs and test items.
"""
from mtp.paired import align, fmt as fmt_ci, paired_bootstrap, seed_interval, sign

REPRODUCED, NOT_AT_SCALE, CONTRADICTED, NO_DATA = "reproduced", "not at this scale", "contradicted", "no data"
INCONCLUSIVE = "inconclusive"  # a paired comparison whose 95% interval includes 0
NO_VERDICT = "no verdict"  # a speed-up whose timing was unstable
DEGENERATE = "no data: degenerate output"  # + the reason from mtp.measure.output_quality
EXPLORATORY = "exploratory"  # a paired comparison over fewer than MIN_SEEDS training seeds
MIN_SEEDS = 3


def claim(text, paper, ours, rule, args, verdict=None, runs=None):
    """One claim before judging. verdict: set where the evidence itself rules a verdict out (degenerate output),
    else the rule decides. runs: the training runs behind it (runs_text), shown in the claims table."""
    return {"claim": text, "paper": paper, "ours": ours, "rule": rule, "args": args, "verdict": verdict,
            "runs": runs or "-"}


def runs_text(records):
    """'6 training runs, 3 seeds per model' (models: distinct dataset/family/n) of the records a claim read."""
    records = {r.name: r for r in records}.values()
    if not records:
        return "-"
    per_model = {}
    for r in records:
        per_model.setdefault((r.dataset, r.family, r.n_heads), set()).add(r.seed)
    seeds = min(len(s) for s in per_model.values())
    each = "one seed per model" if seeds == 1 else f"{seeds} seeds per model"
    return f"{len(records)} training run{'s' if len(records) > 1 else ''}, {each}"


def unstable_verdict(spread):
    return f"{NO_VERDICT}: unstable timing (spread {spread:.0%})"


def _ci_text(ci):
    return f"{ci['level']:.0%} CI [{ci['lo']:+.3f}, {ci['hi']:+.3f}]"


def _inconclusive(cis):
    """The inconclusive verdict of paired intervals, naming those that include 0."""
    cis = [c for c in cis if c is not None and sign(c) == 0]
    if not cis:
        return f"{INCONCLUSIVE} (intervals point both ways)"
    return f"{INCONCLUSIVE} ({'; '.join(_ci_text(c) for c in cis)} include{'s' if len(cis) == 1 else ''} 0)"


def _exploratory(cis, seeds):
    """'one seed: exploratory (the items' interval lies above 0)': what the interval would say, not a verdict."""
    signs = {sign(c) for c in cis}
    says = ("lies above 0" if signs == {1} else "lies below 0" if signs == {-1} else
            "includes 0" if signs == {0} else "intervals point different ways")
    what = "one seed" if seeds == 1 else f"{seeds} seeds"
    return f"{what}: {EXPLORATORY} (needs {MIN_SEEDS} training seeds per model; the interval {says})"


def verdict_paired(intervals, min_seeds=MIN_SEEDS):
    """intervals: one 95% interval per comparison (an n>1 model vs the n=1 model of its size, over its training
    seeds: mtp.paired.seed_interval, oriented so that positive goes the paper's way; None without per-item
    data). With fewer than `min_seeds` (3) seeds in any comparison: "<k> seed(s): exploratory", never
    reproduced or contradicted. Reproduced when more than half of the intervals lie above 0 and none below; contradicted when more than half lie below 0 and none above; inconclusive otherwise ("95% CI
    [a, b] includes 0"); no data without an interval."""
    cis = [c for c in intervals if c is not None]
    if not cis:
        return NO_DATA
    seeds = min(c.get("seeds", 1) for c in cis)
    if seeds < min_seeds:
        return _exploratory(cis, seeds)
    signs = [sign(c) for c in cis]
    if signs.count(1) > len(cis) / 2 and -1 not in signs:
        return REPRODUCED
    if signs.count(-1) > len(cis) / 2 and 1 not in signs:
        return CONTRADICTED
    return _inconclusive(cis)


def kind_of_verdict(verdict):
    """The verdict's kind, for styling: reproduced, contradicted, not-at-this-scale, inconclusive, no-verdict,
    no-data, exploratory."""
    if f": {EXPLORATORY}" in verdict:
        return EXPLORATORY
    for kind in (REPRODUCED, CONTRADICTED, NOT_AT_SCALE, INCONCLUSIVE, NO_VERDICT, NO_DATA):
        if verdict.startswith(kind):
            return kind.replace(" ", "-")
    return "other"


# ---- paired intervals (mtp.paired) vs the n=1 model of the same size

def paired_ci(a, b):
    """95% paired-bootstrap interval of stat(A) - stat(B) over the items both {item id: score} have, or None."""
    if not a or not b:
        return None
    return paired_bootstrap(*align(a, b)[:2])


def seeds_ci(item_pairs):
    """95% interval over training seeds and items (mtp.paired.seed_interval) of [({item: score} of the n>1
    model, {item: score} of its n=1 model)], one pair per seed; None when no pair has per-item data."""
    per_seed = [align(a, b)[:2] for a, b in item_pairs if a and b]
    return seed_interval(per_seed)


def ci_cols(ci):
    """The interval's columns in a table row (blank without an interval)."""
    return {"diff_vs_n1": ci and ci["diff"], "ci95_lo": ci and ci["lo"], "ci95_hi": ci and ci["hi"],
            "paired_items": ci and ci["items"]}


def ci_parts(cis):
    """'name: +0.120 (95% CI [...], 20 items)' per (name, interval); names without per-item data say so."""
    return "; ".join(f"{name}: {fmt_ci(ci) if ci else 'no per-item results to pair'}" for name, ci in cis)
