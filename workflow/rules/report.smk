# The study report: `mtp report` writes a fixed set of files under <results>/report/ (mtp/report.py OUTPUTS;
# a section without data says "no data" inside its files). `snakemake --report report.html` shows them
# with the captions in workflow/report/.
import os

report: "../report/workflow.rst"


def bench_train_input(wildcards):
    """The optional train benchmark (`mtp bench train > <results>/bench/train.json`): an input once it exists."""
    path = R("bench/train.json")
    return [path] if os.path.exists(path) else []


rule build_report:
    input:
        report_inputs(),
        bench_train_input,
    output:
        R("report/index.html"),
        report(R("report/claims.md"), caption="../report/claims.rst", category="1 Claims",
               labels={"table": "claims", "format": "Markdown"}),
        report(R("report/claims.csv"), caption="../report/claims.rst", category="1 Claims",
               labels={"table": "claims", "format": "CSV"}),
        report(R("report/status.md"), caption="../report/status.rst", category="2 Study status",
               labels={"table": "result files per model", "format": "Markdown"}),
        report(R("report/status.csv"), caption="../report/status.rst", category="2 Study status",
               labels={"table": "result files per model", "format": "CSV"}),
        report(R("report/loss_curves.png"), caption="../report/loss_curves.rst", category="3 Training",
               subcategory="Loss curves", labels={"figure": "loss per head per model"}),
        report(R("report/val_loss.png"), caption="../report/val_loss.rst", category="3 Training",
               subcategory="Final validation loss", labels={"figure": "bits per byte by size x n"}),
        report(R("report/val_loss.md"), caption="../report/val_loss.rst", category="3 Training",
               subcategory="Final validation loss", labels={"table": "validation loss", "format": "Markdown"}),
        report(R("report/val_loss.csv"), caption="../report/val_loss.rst", category="3 Training",
               subcategory="Final validation loss", labels={"table": "validation loss", "format": "CSV"}),
        report(R("report/cost.png"), caption="../report/cost.rst", category="4 Cost",
               labels={"figure": "peak memory and step time by n"}),
        report(R("report/cost.md"), caption="../report/cost.rst", category="4 Cost",
               labels={"table": "memory and step time", "format": "Markdown"}),
        report(R("report/cost.csv"), caption="../report/cost.rst", category="4 Cost",
               labels={"table": "memory and step time", "format": "CSV"}),
        report(R("report/speculative.png"), caption="../report/speculative.rst", category="5 Speculative decoding",
               labels={"figure": "tokens per forward and speed-up by heads used"}),
        report(R("report/speculative.md"), caption="../report/speculative.rst", category="5 Speculative decoding",
               labels={"table": "native and vLLM runs", "format": "Markdown"}),
        report(R("report/speculative.csv"), caption="../report/speculative.rst", category="5 Speculative decoding",
               labels={"table": "native and vLLM runs", "format": "CSV"}),
        report(R("report/code.png"), caption="../report/code.rst", category="6 Code benchmarks",
               labels={"figure": "pass@k by size x n"}),
        report(R("report/code.md"), caption="../report/code.rst", category="6 Code benchmarks",
               labels={"table": "pass@k", "format": "Markdown"}),
        report(R("report/code.csv"), caption="../report/code.rst", category="6 Code benchmarks",
               labels={"table": "pass@k", "format": "CSV"}),
        report(R("report/polynomial.png"), caption="../report/polynomial.rst", category="7 Synthetic tasks",
               subcategory="Polynomial arithmetic", labels={"figure": "accuracy by operations m"}),
        report(R("report/polynomial.md"), caption="../report/polynomial.rst", category="7 Synthetic tasks",
               subcategory="Polynomial arithmetic", labels={"table": "accuracy by m", "format": "Markdown"}),
        report(R("report/polynomial.csv"), caption="../report/polynomial.rst", category="7 Synthetic tasks",
               subcategory="Polynomial arithmetic", labels={"table": "accuracy by m", "format": "CSV"}),
        report(R("report/induction.png"), caption="../report/induction.rst", category="7 Synthetic tasks",
               subcategory="Induction", labels={"figure": "accuracy by size x n"}),
        report(R("report/induction.md"), caption="../report/induction.rst", category="7 Synthetic tasks",
               subcategory="Induction", labels={"table": "accuracy", "format": "Markdown"}),
        report(R("report/induction.csv"), caption="../report/induction.rst", category="7 Synthetic tasks",
               subcategory="Induction", labels={"table": "accuracy", "format": "CSV"}),
    log:
        R("logs/build_report.log"),
    params:
        cfg=section("report"),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mtp report --config {CFG} 2>&1 | tee {log}"
