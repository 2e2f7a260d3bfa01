"""The claims table: every claim of the paper the study checks, in order, each judged by its section's rule.

Claims are judged by the verdict_* functions of the sections: pure, one explicit rule each (its docstring),
applied to numbers extracted from the results; no verdict is written by hand. Not a claim: validation loss
(mtp.report.training says why).
"""
import html

from mtp.head_types import PAPER
from mtp.report.study import result_files
from mtp.report.code import claim_small_pass
from mtp.report.cost import claim_memory, claim_overhead
from mtp.report.speculative import claim_bytes, claim_lossless, claim_tpf
from mtp.report.synthetic import claim_induction, claim_polynomial
from mtp.report.verdicts import kind_of_verdict

CLAIMS_NOTE = ("Paired comparisons (n>1 vs the n=1 model of the same size and training seed) carry a 95% interval "
               "over training seeds and test items (hierarchical bootstrap: seeds, then items within each seed; "
               "2000 resamples, seed 0); reproduced and contradicted need it to exclude 0 with at least 3 training "
               "seeds per model, fewer seeds give 'exploratory'. 'training runs' counts the models behind each "
               "verdict. Speed "
               "figures of a model whose output is degenerate (mtp.measure) are not scored; a speed-up whose timing "
               "spread exceeds 25% gives no verdict. Validation loss is no claim: the paper gives no loss number "
               f"and {result_files()['metrics']} holds no per-item losses (see val_loss). The claims are about the paper's parallel "
               "transformer heads (other head types: section Head types); losslessness is checked for every model.")


def claims(records, bench):
    """The claims table: claim, the paper's number, ours, the verdict of its rule and the rule itself."""
    paper = [r for r in records if r.head_type == PAPER]  # the paper's heads
    made = [claim_memory(paper, bench), claim_overhead(paper, bench)]
    made += [f(paper) for f in (claim_tpf, claim_bytes, claim_small_pass, claim_induction, claim_polynomial)]
    made.append(claim_lossless(records))  # every head type's decoding
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
