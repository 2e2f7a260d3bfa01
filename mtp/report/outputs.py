"""The fixed set of files `mtp report` writes under <results>/report/, and how `snakemake --report` shows each.

A section without data says "no data" inside its files, so the set never changes. workflow/rules/report.smk
declares the rule's output from `shown()`; Snakemake imports this while parsing the workflow, so the package
imports neither torch nor MLflow at import time.
"""
TABLES = ("status", "val_loss", "cost", "speculative", "heads", "code", "polynomial", "induction", "tasks", "claims",
          "pretrained")
FIGURES = ("loss_curves", "val_loss", "cost", "speculative", "heads", "code", "polynomial", "induction", "pretrained")
OUTPUTS = ("index.html", *[f"{f}.png" for f in FIGURES], *[f"{t}.{ext}" for t in TABLES for ext in ("md", "csv")])

# Per file stem, in the order `snakemake --report` lists them: category, subcategory, what the figure <stem>.png
# shows, what the table <stem>.md / .csv holds. The caption of each is workflow/report/<stem>.rst.
SHOWN = {
    "claims": ("1 Claims", None, None, "claims"),
    "status": ("2 Study status", None, None, "result files per model"),
    "loss_curves": ("3 Training", "Loss curves", "loss per head per model", None),
    "val_loss": ("3 Training", "Final validation loss", "bits per byte by size x n", "validation loss"),
    "cost": ("4 Cost", None, "peak memory and step time by n", "memory and step time"),
    "speculative": ("5 Speculative decoding", None, "tokens per forward and speed-up by heads used",
                    "native and vLLM runs"),
    "heads": ("5 Speculative decoding", "Head types", "acceptance per draft position by head type",
              "head type x n: quality and speed"),
    "code": ("6 Code benchmarks", None, "pass@k by size x n", "pass@k"),
    "pretrained": ("6 Code benchmarks", "Heads on a pretrained model", "agreement per head against training minutes",
                   "what the heads bought: acceptance, speed-up, pass@1, lossless"),
    "polynomial": ("7 Synthetic tasks", "Polynomial arithmetic", "accuracy by operations m", "accuracy by m"),
    "induction": ("7 Synthetic tasks", "Induction", "accuracy by size x n", "accuracy"),
    "tasks": ("7 Synthetic tasks", "Every task", None, "headline metric per model"),
}


def shown(captions):
    """[(file name, keyword arguments of Snakemake's report() or None)] for every file of OUTPUTS: index.html
    as is, then per stem of SHOWN its figure and its table (Markdown, CSV). captions: the folder of the
    <stem>.rst captions, as the rule file names it."""
    out = [("index.html", None)]
    for stem, (category, subcategory, figure, table) in SHOWN.items():
        where = {"caption": f"{captions}/{stem}.rst", "category": category}
        if subcategory:
            where["subcategory"] = subcategory
        if figure:
            out.append((f"{stem}.png", {**where, "labels": {"figure": figure}}))
        for ext, fmt in (("md", "Markdown"), ("csv", "CSV")) if table else ():
            out.append((f"{stem}.{ext}", {**where, "labels": {"table": table, "format": fmt}}))
    return out
