"""The cluster path run for real: the tiny study through Snakemake's Slurm executor on a one-node Slurm.

workflow/profiles/slurm/local.sh starts munged, slurmctld and slurmd on this machine (Debian's slurm-wlm; the
README's test command installs it); the study runs with `--workflow-profile` set to a copy of
workflow/profiles/slurm/ whose site values (partition, memory, GPUs) fit this machine, as a user edits them
for their cluster. Every job is an sbatch job; the training job of one model is scancelled after its first
checkpoint, the profile's `retries` resubmits it and it resumes from that checkpoint; the results then
equal those of the local run (tests/conftest.py's tiny_study): weights bit for bit, every result file outside
its timings.

The Slurm run builds one model's results, not the whole study (the local run has the study's every job kind;
this model's targets are a job of each kind but the report, which is a local rule): tokenize, train (cancelled
and resumed), export, decode, vLLM, code scores. The whole study took 11.3 minutes through Slurm here, these
targets about a third of that.
"""
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, copy_workflow, snakemake_env
from mtp import config, results

sys.path.insert(0, str(ROOT / "benchmarks"))
from compare_studies import compare  # noqa: E402

LOCAL = ROOT / "workflow" / "profiles" / "slurm" / "local.sh"
HELD_MODEL = ("code", "micro", 2)  # the model the Slurm run builds; its training job is cancelled after its
HELD = "code/micro-n2"              # first checkpoint
HOLD_STEP = 10

# `mtp` that, on the first attempt to train HELD, stops after the step-HOLD_STEP checkpoint (writing the Slurm
# job id to the marker file) and waits there to be cancelled; everything else is the real CLI.
HOLD_WRAPPER = '''#!{python}
import os, sys, time


def hold():
    import mtp.checkpoint
    real = mtp.checkpoint.save_checkpoint

    def save_checkpoint(folder, step, *a, **kw):
        out = real(folder, step, *a, **kw)
        if step == {step}:
            with open({marker!r}, "w") as f:
                f.write(os.environ.get("SLURM_JOB_ID", ""))
            time.sleep(600)  # until scancel
        return out
    mtp.checkpoint.save_checkpoint = save_checkpoint


if __name__ == "__main__":  # vLLM's engine processes re-import this file (spawn)
    args = sys.argv[1:]
    if args[:1] == ["train"] and args[args.index("--model") + 1].endswith("models/code/micro-n2/model.pt") and \\
            not os.path.exists({marker!r}):
        hold()
    from mtp.cli import main
    sys.exit(main())
'''


def slurm_missing():
    if os.geteuid() != 0:
        return "slurmd runs as root here; run the tests as root"
    if not shutil.which("slurmctld") or not shutil.which("munged"):
        return f"Slurm is not installed: {LOCAL.relative_to(ROOT)} install"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'"
    return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node Slurm for this module: the environment its commands need (SLURM_CONF)."""
    missing = slurm_missing()
    if missing:
        pytest.skip(missing)
    state = tmp_path_factory.mktemp("slurm")
    up = subprocess.run([str(LOCAL), "start", str(state)], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    yield {"SLURM_CONF": str(state / "slurm.conf")}
    subprocess.run([str(LOCAL), "stop", str(state)], capture_output=True, timeout=60)


def site_profile(folder):
    """workflow/profiles/slurm/ with this machine's site values: partition "local", memory and CPUs that fit
    2 cores / a few GiB, no GPUs, quick status checks. Everything else is the profile as committed."""
    prof = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    prof["default-resources"].update(slurm_partition="local", slurm_account=None, mem_mb=3000, cpus_per_task=1,
                                     runtime=30)
    prof["set-resources"] = {rule: {"gpu": 0, "cpus_per_task": 1 if rule in ("train_model", "score_code",
                                                                               "tokenize_corpus") else 2}
                             for rule in prof["set-resources"]}
    prof.pop("set-threads", None)
    prof.update({"latency-wait": 10, "slurm-init-seconds-before-status-checks": 1,
                 "seconds-between-status-checks": 2})
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(prof))
    return folder


def cancel_when_held(marker, env, done):
    """Wait for the held training job's marker, then scancel its Slurm job -> the job id (or None)."""
    while not done.is_set():
        if marker.exists() and marker.read_text():
            job = marker.read_text().strip()
            subprocess.run(["scancel", job], env=env, check=True, timeout=30)
            return job
        time.sleep(0.2)
    return None


@pytest.mark.slow
def test_tiny_study_through_slurm_equals_the_local_run_and_survives_a_cancelled_job(slurm, tiny_study, tmp_path):
    local_wd, _ = tiny_study
    wd = copy_workflow(tmp_path / "wd")
    profile = site_profile(tmp_path / "profile")
    marker = tmp_path / "held.jobid"
    wrapper = tmp_path / "bin"
    wrapper.mkdir()
    (wrapper / "mtp").write_text(HOLD_WRAPPER.format(python=sys.executable, marker=str(marker), step=HOLD_STEP))
    (wrapper / "mtp").chmod(0o755)
    env = snakemake_env(wrapper, **slurm)
    cfg = config.load(wd / ".test" / "config.yaml")
    targets = [str(p) for p in results.expected_paths(cfg, [config.find_model(cfg, *HELD_MODEL)])]
    assert len(targets) == 4, targets  # metrics, decode, vllm, eval_code
    done, cancelled = threading.Event(), []
    canceller = threading.Thread(target=lambda: cancelled.append(cancel_when_held(marker, env, done)), daemon=True)
    canceller.start()
    try:
        run = subprocess.run([str(BIN / "snakemake"), "--workflow-profile", str(profile), "--directory", ".test",
                              *targets], cwd=wd, env=env, capture_output=True, text=True, timeout=2400)
    finally:
        done.set()
        canceller.join(timeout=10)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    # every job went through sbatch but the rule the workflow marks local that these targets need (the MLflow
    # store's set-up; the report is local too)
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log)
    local_jobs = re.findall(r"^localrule (\w+):", log, re.M)
    assert sorted(local_jobs) == ["init_tracking"], local_jobs
    kinds = sorted(p.name for p in (wd / ".test" / "results" / "logs").iterdir() if p.is_dir())  # one per rule run
    assert kinds == ["export_model", "score_code", "time_decoding", "time_vllm", "tokenize_corpus", "train_model"], kinds
    steps = int(re.search(r"(\d+) of \1 steps \(100%\) done", log).group(1))
    assert len(submitted) == steps - len(local_jobs) + 1, log[-3000:]  # + 1: the cancelled job's resubmission
    # the cancelled training job was seen as failed and resubmitted; its retry resumed from the checkpoint
    assert cancelled and cancelled[0], "the held training job never reached its checkpoint"
    assert cancelled[0] in [sid for _, sid in submitted]
    train_log = (wd / ".test" / "results" / "logs" / "train_model" / f"{HELD}.log").read_text()
    assert f"step-{HOLD_STEP:07d}.pt" in train_log and "resum" in train_log, train_log[-2000:]
    # the same model and results as the local run's: weights bit for bit, result files outside timings (compare
    # walks its first folder: the Slurm run's)
    counts, diffs = compare(wd / ".test" / "results", local_wd / ".test" / "results")
    assert counts["weights"] == 1 and counts["json"] >= 4, counts
    assert diffs == [], diffs
