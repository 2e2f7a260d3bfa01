"""The report's sections, each registered once (SECTIONS): its title, table and figures, the functions that make
them, the result files whose absence it notes and how `snakemake --report` files them; and from them the fixed set
of files `mtp report` writes under <results>/report/ (OUTPUTS) and what the rule declares (shown()).

A section without data says "no data" inside its files, so the set never changes. workflow/rules/report.smk
declares the rule's output from `shown()`; Snakemake imports this while parsing the workflow, so the package
imports neither torch nor MLflow at import time: sections name their functions as "module:function" (mtp.registry).
"""
from dataclasses import dataclass
from typing import Optional

EVERY_KIND, EVERY_TASK = "every result kind", "every registered task"  # Section.reads of status and tasks


@dataclass(frozen=True)
class Figure:
    """<stem>.png, drawn by plot (records, path; or records, bench, path where it takes the train benchmark:
    mtp.result_types.BenchTrain or None); shown by `snakemake --report` under subcategory with label."""
    stem: str
    plot: str
    label: str
    subcategory: Optional[str] = None
    bench: bool = False


@dataclass(frozen=True)
class Claim:
    """A claim of the paper that a section checks (a row of the claims table): make (records; or records, bench
    where bench=True) -> the claim's dict (claim, paper, ours, runs, rule, args, verdict); rank: its row in the
    claims table; paper_heads: judged on the models with the paper's heads only (else on every model)."""
    make: str
    rank: int
    bench: bool = False
    paper_heads: bool = True


@dataclass(frozen=True)
class Section:
    """One section of the report, in the order of index.html. rows (records; or records, bench) -> the rows of
    its table <table>.md / .csv; figures: its Figures; reads: the result keys (mtp.results) whose absent files it
    notes, or EVERY_KIND / EVERY_TASK; category, subcategory, table_label: where `snakemake --report` shows the
    table (the caption of each file is workflow/report/<stem>.rst); bench: rows also takes the train benchmark
    (mtp.result_types.BenchTrain or None); claims: the Claims of the paper it checks."""
    id: str
    title: str
    table: str
    rows: str
    category: str
    table_label: str
    figures: tuple = ()
    reads: tuple = ()
    subcategory: Optional[str] = None
    bench: bool = False
    claims: tuple = ()


SECTIONS = (
    Section("status", "Study status", "status", "mtp.report.study:status_rows", "2 Study status",
            "result files per model", reads=EVERY_KIND),
    Section("claims", "Claims of the paper, checked", "claims", "mtp.report.claims:claims", "1 Claims", "claims",
            bench=True),
    Section("training", "Training: loss curves and final validation loss (Fig. 3 analogue)", "val_loss",
            "mtp.report.training:val_loss_rows", "3 Training", "validation loss",
            (Figure("loss_curves", "mtp.report.training:plot_loss_curves", "loss per head per model", "Loss curves"),
             Figure("val_loss", "mtp.report.training:plot_val_loss", "bits per byte by size x n",
                    "Final validation loss")), ("metrics",), "Final validation loss"),
    Section("cost", "Cost: peak memory and step time by n (Fig. 2 / Table S5 analogue)", "cost",
            "mtp.report.cost:cost_rows", "4 Cost", "memory and step time",
            (Figure("cost", "mtp.report.cost:plot_cost", "peak memory and step time by n", bench=True),),
            ("metrics",), claims=(Claim("mtp.report.cost:claim_memory", 1, bench=True),
                                  Claim("mtp.report.cost:claim_overhead", 2, bench=True))),
    Section("speculative", "Speculative decoding, native and vLLM (Tables S2/S3 analogue)", "speculative",
            "mtp.report.speculative:speculative_rows", "5 Speculative decoding", "native and vLLM runs",
            (Figure("speculative", "mtp.report.speculative_plot:plot_speculative",
                    "tokens per forward and speed-up by heads used"),), ("decode", "vllm"),
            claims=(Claim("mtp.report.speculative:claim_tpf", 3), Claim("mtp.report.speculative:claim_bytes", 4),
                    Claim("mtp.report.speculative:claim_lossless", 8, paper_heads=False))),
    Section("heads", "Head types: quality and speed by head type x n (Table S4 analogue, with speed)", "heads",
            "mtp.report.heads:head_rows", "5 Speculative decoding", "head type x n: quality and speed",
            (Figure("heads", "mtp.report.heads:plot_heads", "acceptance per draft position by head type",
                    "Head types"),), ("metrics", "decode", "vllm"), "Head types"),
    Section("code", "Code benchmarks: pass@k by size x n (Table S7 analogue)", "code", "mtp.report.code:code_rows",
            "6 Code benchmarks", "pass@k", (Figure("code", "mtp.report.code:plot_code", "pass@k by size x n"),),
            ("code",), claims=(Claim("mtp.report.code:claim_small_pass", 5),)),
    Section("pretrained", "Heads on a pretrained model: agreement against training minutes, acceptance, speed, "
            "pass@1", "pretrained", "mtp.report.pretrained:pretrained_rows", "6 Code benchmarks",
            "what the heads bought: acceptance, speed-up, pass@1, lossless",
            (Figure("pretrained", "mtp.report.pretrained:plot_pretrained",
                    "agreement per head against training minutes", "Heads on a pretrained model"),),
            ("metrics", "decode", "vllm", "code"), "Heads on a pretrained model"),
    Section("polynomial", "Polynomial arithmetic by number of operations (Fig. 8 analogue)", "polynomial",
            "mtp.report.synthetic:polynomial_rows", "7 Synthetic tasks", "accuracy by m",
            (Figure("polynomial", "mtp.report.synthetic:plot_polynomial", "accuracy by operations m",
                    "Polynomial arithmetic"),), ("polynomial",), "Polynomial arithmetic",
            claims=(Claim("mtp.report.synthetic:claim_polynomial", 7),)),
    Section("induction", "Induction by size x n (Fig. 7 analogue)", "induction", "mtp.report.synthetic:induction_rows",
            "7 Synthetic tasks", "accuracy", (Figure("induction", "mtp.report.synthetic:plot_induction",
                                                     "accuracy by size x n", "Induction"),), ("induction",),
            "Induction", claims=(Claim("mtp.report.synthetic:claim_induction", 6),)),
    Section("tasks", "Synthetic tasks: the headline metric of every task", "tasks", "mtp.report.tasks:task_rows",
            "7 Synthetic tasks", "headline metric per model", reads=EVERY_TASK, subcategory="Every task"),
)

def inputs(item, records, bench):
    """The arguments of a Section's rows, a Figure's plot or a Claim's make: (records,), or (records, bench) where
    the item takes the train benchmark (its `bench`)."""
    return (records, bench) if item.bench else (records,)


TABLES = tuple(s.table for s in SECTIONS)
FIGURES = tuple(f.stem for s in SECTIONS for f in s.figures)
OUTPUTS = ("index.html", *[f"{f}.png" for f in FIGURES], *[f"{t}.{ext}" for t in TABLES for ext in ("md", "csv")])


def shown(captions):
    """[(file name, keyword arguments of Snakemake's report() or None)] for every file of OUTPUTS: index.html
    as is, then per section its figures and its table (Markdown, CSV). captions: the folder of the <stem>.rst
    captions, as the rule file names it."""
    out = [("index.html", None)]
    for s in SECTIONS:
        for f in s.figures:
            out.append((f"{f.stem}.png", _where(captions, f.stem, s.category, f.subcategory, figure=f.label)))
        for ext, fmt in (("md", "Markdown"), ("csv", "CSV")):
            out.append((f"{s.table}.{ext}", _where(captions, s.table, s.category, s.subcategory, table=s.table_label,
                                                   format=fmt)))
    return out


def _where(captions, stem, category, subcategory, **labels):
    where = {"caption": f"{captions}/{stem}.rst", "category": category, "labels": labels}
    if subcategory:
        where["subcategory"] = subcategory
    return where
