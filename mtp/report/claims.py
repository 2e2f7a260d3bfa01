"""The claims table: every claim of the paper the study checks, in order, each judged by its section's rule
(the sections name their claims in mtp.report.outputs.SECTIONS).

Claims are judged by the verdict_* functions of the sections: pure, one explicit rule each (its docstring),
applied to numbers extracted from the results; no verdict is written by hand. Not a claim: validation loss
(mtp.report.training says why).
"""
import html

from mtp.head_types import PAPER
from mtp.registry import resolve
from mtp.report.outputs import SECTIONS, inputs
from mtp.report.study import result_files
from mtp.report.verdicts import kind_of_verdict

CLAIMS_NOTE = ("Paired comparisons (n>1 vs the n=1 model of the same size and training seed) carry a 95% interval "
               "over training seeds and test items (Student's t over the seeds' differences, never narrower than the "
               "items' own noise; items: paired bootstrap, 2000 resamples, seed 0); reproduced and contradicted need "
               "it to exclude 0 with at least 3 training "
               "seeds per model, fewer seeds give 'exploratory'. 'training runs' counts the models behind each "
               "verdict. Speed "
               "figures of a model whose output is degenerate (mtp.measure) are not scored; a speed-up whose timing "
               "spread exceeds 25% gives no verdict. Validation loss is no claim: the paper gives no loss number "
               f"and {result_files()['metrics']} holds no per-item losses (see val_loss). The claims are about the paper's parallel "
               "transformer heads (other head types: section Head types); losslessness is checked for every model.")


def claims(records, bench):
    """The claims table: claim, the paper's number, ours, the verdict of its rule and the rule itself; one row per
    Claim of the sections, in the order of their ranks."""
    paper = [r for r in records if r.head_type == PAPER]  # the paper's heads
    every = sorted((c for s in SECTIONS for c in s.claims), key=lambda c: c.rank)
    made = [resolve(c.make)(*inputs(c, paper if c.paper_heads else records, bench)) for c in every]
    return [{"claim": c["claim"], "paper": c["paper"], "ours": c["ours"], "training_runs": c["runs"],
             "verdict": c["verdict"] or c["rule"](*c["args"]),
             "rule": f"{c['rule'].__name__}: {' '.join(c['rule'].__doc__.split())}"} for c in made]


def claims_html(rows):
    head = "<tr><th>claim</th><th>paper</th><th>ours</th><th>training runs</th><th>verdict</th><th>rule</th></tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in ("claim", "paper", "ours",
                                                                             "training_runs"))
                   + f"<td class='v-{kind_of_verdict(r['verdict'])}'>{html.escape(r['verdict'])}</td>"
                   f"<td><small>{html.escape(r['rule'])}</small></td></tr>" for r in rows)
    return f"<table>{head}{body}</table>"
