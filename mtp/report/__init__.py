"""The report: tables, plots and the claims check of the whole study (the `mtp report` stage: mtp/stages/report.py).

Reads every per-model result under <results>/models/<dataset>/<size>-n<n>/ (metrics.json, decode.json,
vllm.json, eval_code.json, eval_polynomial.json, eval_induction.json) and the optional train benchmark
<results>/bench/train.json, and writes the fixed set of files OUTPUTS under <results>/report/. Everything in
the report folder is then logged to the study's MLflow parent run.

One module per section (paper analogue), each with its rows, figure and claims, registered once in
mtp.report.outputs.SECTIONS (title, table, figures, the result files it reads, how `snakemake --report` shows it):
  training     loss curves and final validation loss by size x n (Fig. 3)
  cost         memory and step time by n; the memory and overhead claims (Fig. 2 / Table S5)
  speculative  speculative decoding, native and in vLLM (vllm: reading vllm.json); tokens per forward,
               byte-level gain, losslessness (Tables S2/S3)
  heads        head types side by side: quality, acceptance per position, speed, cost (Table S4 + speed)
  code         code benchmarks pass@k (Table S7); small models and n > 1
  pretrained   heads added to a model that exists: agreement vs training minutes, acceptance, speed, pass@1
  synthetic    polynomial arithmetic by m (Fig. 8) and induction (Fig. 7)
  tasks        every registered synthetic task's headline metric (mtp.tasks), one table
and what they share: study (loading the results), verdicts (verdict kinds, paired intervals), tables and figures
(writing), claims (the claims table), page (index.html), outputs (the sections and the files they write).
"""
from pathlib import Path

from mtp.io import write_text
from mtp.registry import resolve
from mtp.report.claims import CLAIMS_NOTE, claims
from mtp.report.code import code_rows
from mtp.report.cost import (bench_markdown, bench_missing_note, bench_rows, cost_rows, verdict_memory_flat,
                             verdict_training_overhead)
from mtp.report.heads import head_rows
from mtp.report.outputs import FIGURES, OUTPUTS, SECTIONS, TABLES, inputs
from mtp.report.page import index_html, reads
from mtp.report.pretrained import pretrained_rows
from mtp.report.speculative import (speculative_rows, verdict_byte_level_gain_largest, verdict_lossless,
                                    verdict_tokens_per_forward_grow)
from mtp.report.study import (BENCH_TRAIN, result_files, load_bench, load_study, missing_notes, shape_of,
                              status_rows)
from mtp.results import expected
from mtp.report.synthetic import induction_rows, polynomial_rows, verdict_every_m
from mtp.report.tables import write_table
from mtp.report.tasks import task_rows
from mtp.report.training import val_loss_rows
from mtp.report.verdicts import (CONTRADICTED, DEGENERATE, INCONCLUSIVE, NO_DATA, NO_VERDICT, NOT_AT_SCALE,
                                 REPRODUCED, verdict_paired)

__all__ = ["OUTPUTS", "TABLES", "FIGURES", "SECTIONS", "result_files", "BENCH_TRAIN", "task_rows",
           "REPRODUCED", "NOT_AT_SCALE", "CONTRADICTED", "NO_DATA", "INCONCLUSIVE", "NO_VERDICT", "DEGENERATE",
           "verdict_memory_flat", "verdict_training_overhead", "verdict_tokens_per_forward_grow",
           "verdict_byte_level_gain_largest", "verdict_lossless", "verdict_paired", "verdict_every_m",
           "shape_of", "expected", "head_rows", "load_study", "load_bench", "missing_notes", "status_rows", "val_loss_rows",
           "cost_rows", "bench_rows", "speculative_rows", "code_rows", "pretrained_rows", "polynomial_rows", "induction_rows",
           "claims", "build"]


def build(cfg):
    """Write every file of OUTPUTS under <results>/report/; return (folder, claims rows)."""
    out = Path(cfg["results"]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    records = load_study(cfg)
    bench, bench_status = load_bench(cfg)
    table_rows = {s.table: resolve(s.rows)(*inputs(s, records, bench)) for s in SECTIONS}
    notes = {s.id: missing_notes(records, reads(s)) for s in SECTIONS if s.id != "status"}
    if bench is None:
        notes["cost"].append(bench_missing_note(cfg, bench_status))
    extra = {"claims": f"\n{CLAIMS_NOTE}\n", "cost": bench_markdown(bench)}
    for s in SECTIONS:
        write_table(out, s.table, s.title, table_rows[s.table], notes.get(s.id, ()), extra.get(s.id, ""))
        for f in s.figures:
            resolve(f.plot)(*inputs(f, records, bench), out / f"{f.stem}.png")
    write_text(out / "index.html", index_html(cfg, table_rows, notes, bench))
    return out, table_rows["claims"]

