"""The Snakemake pipeline itself: the DAG of the default study, and the tiny study run for real."""
import json
import re
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


def concurrent_jobs(log):
    """From Snakemake's output: every pair of jobs that ran at the same time, as ((rule#jobid, timing), (.., ..)).
    Timing jobs: time_vllm, bench_training and time_decoding of a model with n > 1 (workflow/rules/common.smk:
    TIMING_JOB)."""
    running, pairs = {}, []
    for block in re.split(r"\n(?=\[\w{3} \w{3} +\d+ [\d:]+ \d{4}\]\n)", log):
        start = re.search(r"^(?:local)?rule (\w+):\n(?:.*\n)*?\s+jobid: (\d+)", block, re.M)
        if start:
            rule, job = start.groups()
            n = re.search(r"wildcards: .*\bn=(\d+)", block)
            timing = rule in ("time_vllm", "bench_training") or (rule == "time_decoding" and n and int(n.group(1)) > 1)
            pairs += [(other, (f"{rule}#{job}", bool(timing))) for other in running.items()]
            running[f"{rule}#{job}"] = bool(timing)
        for job, rule in re.findall(r"Finished jobid: (\d+) \(Rule: (\w+)\)", block):
            running.pop(f"{rule}#{job}", None)
    return pairs


@pytest.mark.slow
def test_timing_jobs_of_the_tiny_study_ran_alone(tiny_study):
    """Nothing ran beside a timing job (the named resource `machine`: a timing job holds all its shares), while
    work jobs did run side by side (so the log's parsing sees concurrency where there was some)."""
    _, log = tiny_study
    assert "localrule time_vllm:" in log and "localrule time_decoding:" in log
    pairs = concurrent_jobs(log)
    assert [(a, b) for a, b in pairs if a[1] or b[1]] == []
    assert any(not a[1] and not b[1] for a, b in pairs)
