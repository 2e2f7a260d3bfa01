"""The report's one HTML page (index.html): every section of mtp.report.outputs.SECTIONS in order, with its
figures and table."""
import html

from mtp.report.claims import CLAIMS_NOTE, claims_html
from mtp.report.cost import bench_rows
from mtp.report.outputs import EVERY_KIND, EVERY_TASK, SECTIONS
from mtp.report.study import result_files
from mtp.report.tables import cell, columns
from mtp.tasks import TASKS

def reads(section):
    """The result keys whose absent files `section` notes (mtp.report.outputs.Section.reads resolved)."""
    if section.reads == EVERY_KIND:
        return list(result_files())
    return list(TASKS) if section.reads == EVERY_TASK else list(section.reads)


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
    parts += [f"<li><a href='#{s.id}'>{html.escape(s.title)}</a></li>" for s in SECTIONS]
    parts.append("</ul>")
    for section in SECTIONS:
        parts += _section_html(section, table_rows, notes, bench)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _section_html(section, table_rows, notes, bench):
    sid, table = section.id, section.table
    parts = [f"<h2 id='{sid}'>{html.escape(section.title)}</h2>"]
    parts += [f"<p class='missing'>Missing: {html.escape(n)}</p>" for n in notes.get(sid, ())]
    if sid == "claims":
        parts.append(claims_html(table_rows["claims"]) + f"<p>{html.escape(CLAIMS_NOTE)}</p>")
    for i, f in enumerate(section.figures):
        alt = section.title if i == 0 else f.label
        parts.append(f"<p><img src='{f.stem}.png' alt='{html.escape(alt)}'></p>")
    if sid != "claims":
        parts.append(html_table(table_rows[table]))
    if sid == "cost" and bench:
        parts.append("<h3>Train benchmark</h3>" + html_table(bench_rows(bench)))
    parts.append(f"<p>Table: <a href='{table}.md'>{table}.md</a>, <a href='{table}.csv'>{table}.csv</a></p>")
    return parts
