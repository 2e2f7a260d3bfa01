"""Verdict kinds, the paired-comparison rule every section shares, and the claim record.

Sections build claims with `claim(...)`: the evidence (`ours`), the pure rule that judges it (a verdict_*
function whose docstring states the rule) and its arguments; mtp.report.claims applies the rule. Paired
comparisons (pass@k, induction, polynomial per m: an n>1 model vs the n=1 model of its size) carry a 95%
paired-bootstrap interval over test items (mtp.paired, 2000 resamples, seed 0); "reproduced" and
"contradicted" need it to exclude 0. The paper gives points without intervals: the noise we allow is our
own sampling noise over test items.
"""
from mtp.paired import align, fmt as fmt_ci, paired_bootstrap, sign

REPRODUCED, NOT_AT_SCALE, CONTRADICTED, NO_DATA = "reproduced", "not at this scale", "contradicted", "no data"
INCONCLUSIVE = "inconclusive"  # a paired comparison whose 95% interval includes 0
NO_VERDICT = "no verdict"  # a speed-up whose timing was unstable
DEGENERATE = "no data: degenerate output"  # + the reason from mtp.measure.output_quality


def claim(text, paper, ours, rule, args, verdict=None):
    """One claim before judging. verdict: set where the evidence itself rules a verdict out (degenerate output),
    else the rule decides."""
    return {"claim": text, "paper": paper, "ours": ours, "rule": rule, "args": args, "verdict": verdict}


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


def verdict_paired(intervals):
    """intervals: one 95% paired-bootstrap interval per comparison (an n>1 model vs the n=1 model of its size;
    mtp.paired.paired_bootstrap, oriented so that positive goes the paper's way; None without per-item data).
    Reproduced when more than half of the intervals lie above 0 and none below; contradicted when more than
    half lie below 0 and none above; inconclusive otherwise ("95% CI [a, b] includes 0"); no data without an
    interval."""
    cis = [c for c in intervals if c is not None]
    if not cis:
        return NO_DATA
    signs = [sign(c) for c in cis]
    if signs.count(1) > len(cis) / 2 and -1 not in signs:
        return REPRODUCED
    if signs.count(-1) > len(cis) / 2 and 1 not in signs:
        return CONTRADICTED
    return _inconclusive(cis)


def kind_of_verdict(verdict):
    """The verdict's kind, for styling: reproduced, contradicted, not-at-this-scale, inconclusive, no-verdict,
    no-data."""
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


def ci_cols(ci):
    """The interval's columns in a table row (blank without an interval)."""
    return {"diff_vs_n1": ci and ci["diff"], "ci95_lo": ci and ci["lo"], "ci95_hi": ci and ci["hi"],
            "paired_items": ci and ci["items"]}


def ci_parts(cis):
    """'name: +0.120 (95% CI [...], 20 items)' per (name, interval); names without per-item data say so."""
    return "; ".join(f"{name}: {fmt_ci(ci) if ci else 'no per-item results to pair'}" for name, ci in cis)
