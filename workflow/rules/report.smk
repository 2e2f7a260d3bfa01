# The study report: `mtp report` writes a fixed set of files under <results>/report/ (mtp/report/outputs.py
# OUTPUTS; a section without data says "no data" inside its files). `snakemake --report report.html` shows them
# with the captions in workflow/report/.
import os

from mtp.report.outputs import shown  # imports neither torch nor MLflow

report: "../report/workflow.rst"


def bench_train_input(wildcards):
    """The train benchmark <results>/bench/train.json: rule bench_training's output with bench.train, else an input
    once it exists (`mtp bench train --dataset ... --out` by hand)."""
    path = R(mtp.results.BENCH_TRAIN)
    return [path] if config["bench"]["train"] or os.path.exists(path) else []


def report_outputs():
    """Every file of mtp.report.OUTPUTS under <results>/report/, with its caption for `snakemake --report`."""
    return [report(R(f"report/{name}"), **how) if how else R(f"report/{name}") for name, how in shown("../report")]


rule build_report:
    input:
        report_inputs(),
        bench_train_input,
        config=ancient(CFG),  # the resolved config every `mtp` call reads
    output:
        report_outputs(),
    log:
        R("logs/build_report.log"),
    params:
        cfg=section("report"),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mtp report --config {input.config} 2>&1 | tee {log}"
