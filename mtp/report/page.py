"""The report's sections, in order, and its one HTML page (index.html) linking every figure and table."""
import html

from mtp.report.claims import CLAIMS_NOTE, claims_html
from mtp.report.cost import bench_rows
from mtp.report.study import result_files
from mtp.tasks import TASKS
from mtp.report.tables import cell, columns

def sections():
    """The report's sections in order: (id, title, figure or None, table, result files it reads); the status and
    tasks sections read the result files of every registered task (mtp.tasks)."""
    return [("status", "Study status", None, "status", list(result_files())), *SECTIONS,
            ("tasks", "Synthetic tasks: the headline metric of every task", None, "tasks", list(TASKS))]


SECTIONS = [  # the fixed sections after the status: (id, title, figure or None, table, result files it reads)
    ("claims", "Claims of the paper, checked", None, "claims", []),
    ("training", "Training: loss curves and final validation loss (Fig. 3 analogue)", "loss_curves", "val_loss",
     ["metrics"]),
    ("cost", "Cost: peak memory and step time by n (Fig. 2 / Table S5 analogue)", "cost", "cost", ["metrics"]),
    ("speculative", "Speculative decoding, native and vLLM (Tables S2/S3 analogue)", "speculative", "speculative",
     ["decode", "vllm"]),
    ("heads", "Head types: quality and speed by head type x n (Table S4 analogue, with speed)", "heads", "heads",
     ["metrics", "decode", "vllm"]),
    ("code", "Code benchmarks: pass@k by size x n (Table S7 analogue)", "code", "code", ["code"]),
    ("pretrained", "Heads on a pretrained model: agreement against training minutes, acceptance, speed, pass@1",
     "pretrained", "pretrained", ["metrics", "decode", "vllm", "code"]),
    ("polynomial", "Polynomial arithmetic by number of operations (Fig. 8 analogue)", "polynomial", "polynomial",
     ["polynomial"]),
    ("induction", "Induction by size x n (Fig. 7 analogue)", "induction", "induction", ["induction"]),
]

STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}.missing{color:#a40}
.v-reproduced{background:#dfd}.v-contradicted{background:#fdd}.v-not-at-this-scale{background:#ffd}
.v-no-data{background:#eee}.v-inconclusive{background:#eef}.v-no-verdict{background:#eee}
.v-exploratory{background:#f4eefc}"""


def html_table(rows):
    if not rows:
        return "<p><em>no data</em></p>"
    cols = columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def index_html(cfg, table_rows, notes, bench):
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>mtp report: {html.escape(str(cfg['results']))}"
             f"</title><style>{STYLE}</style></head><body>",
             "<h1>Multi-token prediction: study report</h1>",
             "<p>Reproducing Gloeckle et al., <em>Better &amp; Faster Large Language Models via Multi-token "
             "Prediction</em> "
             f"(ICML 2024). Results: <code>{html.escape(str(cfg['results']))}</code>; "
             f"{len(table_rows['status'])} models in the config.</p>", "<ul>"]
    parts += [f"<li><a href='#{sid}'>{html.escape(title)}</a></li>" for sid, title, *_ in sections()]
    parts.append("</ul>")
    for section in sections():
        parts += _section_html(section, table_rows, notes, bench)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _section_html(section, table_rows, notes, bench):
    sid, title, fig, table, _ = section
    parts = [f"<h2 id='{sid}'>{html.escape(title)}</h2>"]
    parts += [f"<p class='missing'>Missing: {html.escape(n)}</p>" for n in notes.get(sid, ())]
    if sid == "claims":
        parts.append(claims_html(table_rows["claims"]) + f"<p>{html.escape(CLAIMS_NOTE)}</p>")
    if fig:
        parts.append(f"<p><img src='{fig}.png' alt='{html.escape(title)}'></p>")
    if sid == "training":
        parts.append("<p><img src='val_loss.png' alt='final validation loss by size and n'></p>")
    if sid != "claims":
        parts.append(html_table(table_rows[table]))
    if sid == "cost" and bench:
        parts.append("<h3>Train benchmark</h3>" + html_table(bench_rows(bench)))
    parts.append(f"<p>Table: <a href='{table}.md'>{table}.md</a>, <a href='{table}.csv'>{table}.csv</a></p>")
    return parts
