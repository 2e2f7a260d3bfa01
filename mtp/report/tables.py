"""Writing a table: Markdown (with the section's title and notes) and CSV, from a list of row dicts."""
import csv
import io

from mtp.io import write_text


def fmt(x, digits=3):
    """A number for a sentence or a cell: '-' for None, 3 decimals, or 3 significant digits when tiny or huge."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3) else f"{x:.{digits}f}"
    return str(x)


def cell(x):
    return f"{x:.4g}" if isinstance(x, float) else fmt(x)


def columns(rows):
    """Every key of the rows, in first-seen order (rows of models with more heads have more columns)."""
    return list(dict.fromkeys(k for r in rows for k in r))


def markdown_table(rows):
    if not rows:
        return "_no data_\n"
    cols = columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows):
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=columns(rows), lineterminator="\n")
        w.writeheader()
        w.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    else:
        buf.write("no data\n")
    return buf.getvalue()


def write_table(out, name, title, rows, notes=(), extra_md=""):
    md = f"# {title}\n\n" + "".join(f"- {n}\n" for n in notes) + ("\n" if notes else "")
    md += markdown_table(rows) + extra_md
    write_text(out / f"{name}.md", md)
    write_text(out / f"{name}.csv", csv_text(rows))
