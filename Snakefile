# mtp: the multi-token prediction study as one DAG.
#   tokenize -> train (n x size sweep) -> decode, vllm, eval -> report
# Every rule calls one `mtp <stage>` command; see README.md.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


import mtp.config

mtp.config.coerce_cli_strings(config)  # --config 'train={"max_steps": 400}' arrives as strings
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/vllm.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        report_inputs(),
        R("report/index.html"),
    default_target: True
