"""The Snakemake pipeline itself: the DAG of the default study, and the tiny study run for real."""
import json
import subprocess

import pytest

from conftest import BIN, snakemake_env

RULES = ["init_tracking", "tokenize_corpus", "train_model", "export_model", "time_decoding", "time_vllm",
         "score_code", "score_synthetic", "build_report"]


def snakemake(workdir, *args, cwd_dir=None):
    return subprocess.run([str(BIN / "snakemake"), "--cores", "2", *args], cwd=cwd_dir or workdir,
                          capture_output=True, text=True, env=snakemake_env(), timeout=1500)


def test_default_study_dry_run_lists_every_rule(workdir):
    out = snakemake(workdir, "-n", "--quiet", "rules")
    assert out.returncode == 0, out.stderr[-3000:]
    for rule in RULES:
        assert rule in out.stdout, rule


@pytest.mark.slow
def test_tiny_study_runs_and_second_run_has_nothing_to_do(tiny_study):
    workdir, _ = tiny_study
    results = workdir / ".test" / "results"
    assert (results / "report" / "index.html").exists()
    assert (results / "models" / "code" / "micro-n2" / "decode.json").exists()
    medusa = results / "models" / "code" / "micro-medusa-n2"  # a head type swept beside the paper's
    assert json.loads((medusa / "decode.json").read_text())["per_batch"][0]["lossless"] is True
    assert (medusa / "eval_code.json").exists()  # and vLLM served it with its own Medusa drafter, cross-checked:
    assert json.loads((medusa / "vllm.json").read_text())["crosscheck"]["ok"] is True
    assert "| code | micro-medusa | 2 |" in (results / "report" / "speculative.md").read_text()
    assert "| code | micro | medusa | 2 |" in (results / "report" / "heads.md").read_text()  # head types side by side
    second = snakemake(workdir, "--directory", ".test")
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr
