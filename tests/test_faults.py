"""Faults across the whole pipeline (issue 9): kill -9 anywhere, full disks, bad input, too little memory.

Everything runs for real: `mtp` in its own processes, Snakemake, MLflow on SQLite. docs/FAULTS.md lists
each fault, what happens, what the user does, and the test here that proves it.

The kill tests run the *faults study* (the tiny .test config, one n=2 model, 20 steps with a checkpoint every
5, HumanEval scoring on 2 problems) once uninterrupted (module fixture `baseline`), then again in a copy of the
workflow while SIGKILLing its jobs at seeded random points, each time rerunning `snakemake --rerun-incomplete`
(after `--unlock` when Snakemake itself was killed), and compare every result with the baseline: bit-exact
weights, optimizer state, losses, token files, decoding counts and scores; only timings may differ.

Kill points come from a seeded plan (MTP_FAULT_SEED, default 9). "timer" kills are sent from outside once the
job's process has used a seeded fraction of its stage's CPU time; the other points are reached exactly by the
`mtp` wrapper below, which runs the real CLI but SIGKILLs its own process in the middle of a checkpoint's
torch.save (a partial file on disk), after a checkpoint's .pt is in place but before its sha256 sidecar, or
between a finished temporary file and its rename.

Bad input runs each case as its own `mtp` process, forked from one that has imported mtp once (FORK_SERVER);
the generated (hypothesis) cases call mtp.cli.main in-process, the function `python -m mtp.cli` runs.
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import psutil
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import conftest
from conftest import BIN, ROOT
from mtp import checkpoint, cli, config
from mtp.io import sha256_file

SEED = int(os.environ.get("MTP_FAULT_SEED", "9"))
STEPS, EVERY = 20, 5
MODEL = "models/code/micro-n2"
# CPU seconds each stage's job takes in the faults study (measured on 2 cores: Baseline.cpu); a "timer" kill
# lands at a seeded 15-85% of it. Where a job needs less, the kill finds it finished (still unreported to
# Snakemake): the wrapper keeps it alive, so a kill never misses.
CPU_SECONDS = {"tokenize": 5.0, "train": 8.0, "decode": 6.0, "eval": 4.0,
               "vllm": 20.0}  # the `mtp vllm` process alone (not its engine processes), 2 configurations
TIMING_KEYS = {"tokens_per_s", "seconds", "seconds_all", "speedup", "wall_s", "step_time_s", "peak_mem_bytes",
               "train_run_id", "elapsed_s", "logged_model_id"}


# ---------------------------------------------------------------- the faults study

def faults_config(results="results"):
    """The tiny .test study cut to what the kill tests need: tokenize, train one n=2 model, decode, score, report."""
    cfg = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    cfg["results"] = results
    cfg["datasets"] = {"code": cfg["datasets"]["code"]}
    cfg["sweeps"] = [{"dataset": "code", "sizes": ["micro"], "n_heads": [2]}]
    cfg["train"].update(max_steps=STEPS, checkpoint_every=EVERY, eval_every=10, warmup_steps=5)
    cfg["vllm"] = {"enabled": False}
    cfg["eval"]["code"] = {"enabled": True, "benchmarks": ["humaneval"], "max_problems": 2, "max_new_tokens": 16,
                           "batch_size": 2, "timeout_s": 10.0, "unsafe_no_sandbox": shutil.which("bwrap") is None}
    return cfg


def copy_workflow(dst):
    """conftest.copy_workflow, for module-scoped use; the study config replaced by faults_config()."""
    return use_faults_config(conftest.copy_workflow(dst))


def use_faults_config(wd):
    (wd / ".test" / "config.yaml").write_text(yaml.safe_dump(faults_config()))
    return wd


def env(path_first=None, **extra):
    return conftest.snakemake_env(path_first, **extra)


def snakemake_cmd(*args):
    return [str(BIN / "snakemake"), "--cores", "2", "--directory", ".test", *args]


def jobs_of(proc):
    """The `mtp <stage>` processes below Snakemake process `proc`: [(psutil.Process, stage)]."""
    out = []
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return out
    for p in kids:
        try:
            argv = p.cmdline()
        except psutil.Error:
            continue
        for i, a in enumerate(argv[:-1]):
            if Path(a).name == "mtp" and i <= 1:
                out.append((p, argv[i + 1]))
                break
    return out


def cpu_seconds(p):
    t = p.cpu_times()
    return t.user + t.system


class Baseline:
    """The faults study run once, uninterrupted, in the background (the kill test runs beside it);
    wait() -> its folder; .cpu: the CPU seconds each stage's process used."""

    def __init__(self, wd):
        import threading
        self.dir, self.results, self.cpu, self.log = wd, wd / ".test" / "results", {}, []
        self.proc = subprocess.Popen(snakemake_cmd(), cwd=wd, env=env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _watch(self):
        import threading
        reader = threading.Thread(target=lambda: self.log.extend(self.proc.stdout), daemon=True)
        reader.start()
        while self.proc.poll() is None:
            for p, stage in jobs_of(self.proc):
                try:
                    self.cpu[stage] = max(self.cpu.get(stage, 0.0), cpu_seconds(p))
                except psutil.Error:
                    pass
            time.sleep(0.05)
        reader.join(timeout=10)

    def wait(self):
        self.watcher.join(timeout=900)
        assert self.proc.returncode == 0, "".join(self.log)[-5000:]
        return self


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    base = Baseline(copy_workflow(tmp_path_factory.mktemp("baseline")))
    yield base
    if base.proc.poll() is None:
        base.proc.kill()
        base.proc.wait()


# ---------------------------------------------------------------- the fault-injecting `mtp`

WRAPPER = '''#!{python}
"""`mtp` with a planned fault: MTP_TEST_FAULT = stage:point:k:fraction:marker[;...] (the real CLI otherwise)."""
import os, signal, sys, time


def die(marker, what):
    with open(marker, "a") as f:
        f.write(what + "\\n")
        f.flush()
        os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


stage = sys.argv[1] if len(sys.argv) > 1 else ""
plan = [f for f in os.environ.get("MTP_TEST_FAULT", "").split(";") if f.split(":")[0] == stage]
hold = False
if plan:
    want, point, k, frac, marker = plan[0].split(":", 4)
    k, frac, calls = int(k), float(frac), [0]
    if want == stage and point == "torch_save":  # die inside the k-th torch.save, part of the file written
        import io
        import torch
        real_save = torch.save

        def save(obj, f, *a, **kw):
            calls[0] += 1
            if calls[0] != k:
                return real_save(obj, f, *a, **kw)
            buf = io.BytesIO()
            real_save(obj, buf, *a, **kw)
            data = buf.getvalue()
            with open(f, "wb") as out:
                out.write(data[:int(len(data) * frac)])
                out.flush()
                os.fsync(out.fileno())
            die(marker, f"torch_save #{{k}} {{f}} {{int(len(data) * frac)}}/{{len(data)}} bytes")
        torch.save = save
    elif want == stage and point == "sidecar":  # die after a checkpoint's .pt is in place, before its sidecar
        import mtp.checkpoint
        real_write = mtp.checkpoint.write_json

        def write_json(path, obj):
            calls[0] += 1
            if calls[0] == k:
                die(marker, f"sidecar #{{k}} {{path}}")
            return real_write(path, obj)
        mtp.checkpoint.write_json = write_json
    elif want == stage and point == "rename":  # die between a complete, fsynced temp file and its rename
        import mtp.io

        class Os:
            def __getattr__(self, name):
                return getattr(os, name)

            def replace(self, src, dst):
                calls[0] += 1
                if calls[0] == k:
                    die(marker, f"rename #{{k}} {{dst}}")
                return os.replace(src, dst)
        mtp.io.os = Os()
    elif want == stage and point == "timer":  # killed from outside; stay alive after finishing so no kill misses
        hold = marker

from mtp.cli import main

rc = main()
if hold:
    with open(hold, "a") as f:
        f.write("finished\\n")
    time.sleep(120)
sys.exit(rc)
'''


def install_wrapper(folder):
    folder.mkdir(exist_ok=True)
    path = folder / "mtp"
    path.write_text(WRAPPER.format(python=sys.executable))
    path.chmod(0o755)
    return folder


# ---------------------------------------------------------------- checks

def latest_step(results):
    ck = results / MODEL / "ckpt"
    steps = [int(p.stem.split("-")[1]) for p in ck.glob("step-*.pt") if checkpoint.is_valid(p)] if ck.exists() else []
    return max(steps, default=0)


def assert_no_partial_file_taken_as_complete(results):
    """Every file at its final name is whole: JSON parses, a .pt either matches its sidecar and loads or is
    refused by checkpoint.load, token files match meta.json. Partial data only ever sits in .*.tmp files."""
    for path in results.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pt":
            if checkpoint.is_valid(path):
                payload = checkpoint.load(path)
                if path.parent.name == "ckpt":
                    assert payload["step"] == int(path.stem.split("-")[1])
            else:
                with pytest.raises(Exception, match="corrupt or incomplete"):
                    checkpoint.load(path)
    data = results / "data" / "code"
    if (data / "meta.json").exists():
        meta = json.loads((data / "meta.json").read_text())
        for name in ("train.bin", "val.bin", "tokenizer.json"):
            assert sha256_file(data / name) == meta["sha256"][name], name


def strip(obj):
    """A result without its timings (and MLflow run ids): what must be identical run to run."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items()
                if k not in TIMING_KEYS and "tokens_per_s" not in k and "speedup" not in k}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def csv_without(path, drop_cols=(), drop_rows=()):
    import csv
    rows = list(csv.reader(path.read_text().splitlines()))
    if not rows:
        return rows
    keep = [i for i, c in enumerate(rows[0]) if c not in drop_cols]
    return [[r[i] for i in keep if i < len(r)] for r in rows if not any(s in ",".join(r) for s in drop_rows)]


def assert_same_results(a, b):
    """Results of two runs of the faults study are equal: bit-exact tensors, equal numbers except timings."""
    for name in ("train.bin", "val.bin", "tokenizer.json", "meta.json"):
        assert (a / "data/code" / name).read_bytes() == (b / "data/code" / name).read_bytes(), name
    ma, mb = torch.load(a / MODEL / "model.pt", weights_only=False), torch.load(b / MODEL / "model.pt", weights_only=False)
    assert ma["model"].keys() == mb["model"].keys()
    for k in ma["model"]:
        assert torch.equal(ma["model"][k], mb["model"][k]), f"model.pt {k} differs"
    assert strip({k: v for k, v in ma.items() if k != "model"}) == strip({k: v for k, v in mb.items() if k != "model"})
    last = f"ckpt/step-{STEPS:07d}.pt"
    ca, cb = checkpoint.load(a / MODEL / last), checkpoint.load(b / MODEL / last)
    for (k, t), (_, u) in zip(sorted(ca["optimizer"]["state"].items()), sorted(cb["optimizer"]["state"].items())):
        for name in t:
            assert torch.equal(torch.as_tensor(t[name]), torch.as_tensor(u[name])), f"optimizer {k}.{name} differs"
    assert ca["state"]["history"] == cb["state"]["history"] and strip(ca["state"]["val"]) == strip(cb["state"]["val"])
    for name in ("metrics.json", "decode.json", "eval_code.json"):
        ja, jb = json.loads((a / MODEL / name).read_text()), json.loads((b / MODEL / name).read_text())
        assert strip(ja) == strip(jb), name
    da = json.loads((a / MODEL / "decode.json").read_text())
    assert da["per_batch"][0]["tokens_per_forward"] > 1 and all(r["lossless"] for r in da["per_batch"])
    rep_a, rep_b = a / "report", b / "report"
    for table in ("val_loss", "status", "code", "polynomial", "induction"):
        assert (rep_a / f"{table}.csv").read_text() == (rep_b / f"{table}.csv").read_text(), table
    timing = ("tokens_per_s", "speedup", "speedup_min", "speedup_max", "spread", "timing")  # timings and their spread
    assert csv_without(rep_a / "speculative.csv", timing) == csv_without(rep_b / "speculative.csv", timing)
    noisy = ("memory", "overhead", "Byte-level")  # claims judged on timings or peak memory
    assert csv_without(rep_a / "claims.csv", drop_rows=noisy) == csv_without(rep_b / "claims.csv", drop_rows=noisy)


def child_runs(store):
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name("mtp-test")
    return [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if r.data.tags.get("mtp.role") != "study"]


# ---------------------------------------------------------------- 1 + 2: kill -9 anywhere, then --rerun-incomplete

def plan_events(rng):
    """The seeded kill plan: per Snakemake run, the (stage, point) faults and whether Snakemake dies with its
    jobs (a crashed session) or the job alone. Decode and scoring share a run (--keep-going). Points other
    than timer are the k-th call within the job (k drawn from calls_left)."""
    tokenize = rng.choice(["timer", "rename"])
    return [([("tokenize", tokenize)], tokenize == "timer" and rng.random() < 0.5),
            ([("train", "timer")], True),  # a fresh run, before its first checkpoint or between two; all killed
            ([("train", "torch_save")], False),  # during a checkpoint write
            ([("train", rng.choice(["sidecar", "rename"]))], False),  # .pt without sidecar / temp not renamed
            ([("decode", "timer"), ("eval", "timer")], False)]


def calls_left(stage, point, results):
    """How many torch.save / sidecar / rename calls the next run of `stage` makes (k is drawn from 1..that)."""
    if stage == "tokenize":
        return 4  # tokenizer.json, train.bin, val.bin, meta.json
    if stage != "train":
        return 1
    saves = (STEPS - latest_step(results)) // EVERY + 1  # checkpoints left + model.pt
    return {"torch_save": saves, "sidecar": saves, "rename": 2 * saves + 1}.get(point, 1)


def run_with_faults(wd, fault_bin, faults, whole_tree, rng, tag, *targets):
    """One `snakemake --rerun-incomplete` during which every (stage, point) of `faults` SIGKILLs its job
    (with `whole_tree`, a timer kill takes Snakemake and all its processes) -> (descriptions, its output)."""
    results = wd / ".test" / "results"
    plans, timers = [], {}
    for stage, point in faults:
        marker = wd / f"fault-{tag}-{stage}.txt"
        k = rng.randint(1, calls_left(stage, point, results))
        plans.append(f"{stage}:{point}:{k}:{round(rng.uniform(0.05, 0.95), 3)}:{marker}")
        if point == "timer":
            timers[stage] = (rng.uniform(0.15, 0.85) * CPU_SECONDS[stage], marker)
    args = ("--rerun-incomplete",) + (("--keep-going",) if len(faults) > 1 else ()) + targets
    proc = subprocess.Popen(snakemake_cmd(*args), cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env(fault_bin, MTP_TEST_FAULT=";".join(plans)), start_new_session=True)
    fired = {}
    while proc.poll() is None and len(fired) < len(timers):
        for p, stage in jobs_of(proc):
            if stage not in timers or stage in fired:
                continue
            target, marker = timers[stage]
            try:
                used, finished = cpu_seconds(p), marker.exists()
                if used < target and not finished:
                    continue
                victims = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)] \
                    if whole_tree else [p]
                for v in victims:
                    v.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
            fired[stage] = (f"timer, {'after the job finished' if finished else f'at {used:.2f} s CPU (target {target:.2f})'}"
                            f"{', Snakemake and all its jobs' if whole_tree else ''}")
        time.sleep(0.02)
    out = proc.communicate(timeout=300)[0]
    for stage, point in faults:
        marker = wd / f"fault-{tag}-{stage}.txt"
        if point != "timer" and marker.exists():
            fired[stage] = marker.read_text().strip()
        assert stage in fired, f"the {point} fault in {stage} never fired\n{out[-4000:]}"
    assert proc.returncode != 0, f"Snakemake succeeded though its jobs were killed\n{out[-3000:]}"
    return [f"{stage}: {fired[stage]}" for stage, _ in faults], out


@pytest.mark.slow
def test_kill9_anywhere_then_rerun_incomplete_gives_identical_results(baseline, workdir):
    """Seeded SIGKILLs in tokenize, train (before/between/during checkpoint writes), decode and scoring, of the
    job alone or of Snakemake with all its jobs; after each, no partial file is taken as complete, the rerun
    resumes, and the final results equal the uninterrupted run's (report included). MLflow: no run is left
    RUNNING, every killed run is superseded by its rerun, and the final runs hold the same numbers."""
    rng = random.Random(SEED)
    wd = use_faults_config(workdir)
    results = wd / ".test" / "results"
    fault_bin = install_wrapper(wd / "faultbin")
    fired, outputs = [], []
    for i, (faults, whole_tree) in enumerate(plan_events(rng)):
        kills, out = run_with_faults(wd, fault_bin, faults, whole_tree, rng, i)
        fired += kills
        outputs.append(out[-2000:])
        assert_no_partial_file_taken_as_complete(results)
        if whole_tree:  # Snakemake died holding its lock: the documented recovery runs --unlock first
            locked = subprocess.run(snakemake_cmd("--rerun-incomplete"), cwd=wd, env=env(), capture_output=True, text=True)
            assert locked.returncode != 0 and "unlock" in locked.stdout + locked.stderr
            unlock = subprocess.run(snakemake_cmd("--unlock"), cwd=wd, env=env(), capture_output=True, text=True)
            assert unlock.returncode == 0, unlock.stderr[-2000:]
    final = subprocess.run(snakemake_cmd("--rerun-incomplete"), cwd=wd, env=env(), capture_output=True, text=True,
                           timeout=900)
    assert final.returncode == 0, (final.stdout + final.stderr)[-5000:] + "\n".join(outputs)[-4000:]
    print("\n" + "\n".join(fired) + f"\nbaseline CPU seconds per stage: {baseline.wait().cpu}")

    assert_no_partial_file_taken_as_complete(results)
    assert_same_results(baseline.wait().results, results)
    for folder in (results / "data" / "code", results / MODEL / "ckpt"):  # killed writers' temp files are cleaned
        assert not list(folder.glob(".*.tmp")), list(folder.glob(".*.tmp"))

    runs = child_runs(wd / ".test" / "mlflow.db")
    assert not [r for r in runs if r.info.status == "RUNNING"], "a killed job's run was left RUNNING"
    by_job = {}
    for r in runs:
        by_job.setdefault(r.data.tags["mtp.job"], []).append(r)
    assert {r.data.tags["mtp.stage"] for r in runs} >= {"tokenize", "train", "decode", "eval_code"}
    for job, rs in by_job.items():
        live = [r for r in rs if "mtp.superseded" not in r.data.tags]
        assert len(live) == 1 and live[0].info.status == "FINISHED", [(r.info.status, r.data.tags) for r in rs]
    killed = [r for r in runs if r.info.status == "KILLED"]  # at least the two killed at a checkpoint write
    assert len(killed) >= 2, f"only {len(killed)} runs marked KILLED after the kills {fired}"
    assert all("mtp.superseded" in r.data.tags for r in killed)
    base = child_runs(baseline.dir / ".test" / "mlflow.db")
    final_train = [r for r in runs if r.data.tags["mtp.stage"] == "train" and "mtp.superseded" not in r.data.tags]
    base_train = [r for r in base if r.data.tags["mtp.stage"] == "train"]
    assert final_train[0].data.metrics["val_bits_per_byte"] == base_train[0].data.metrics["val_bits_per_byte"]


# ---------------------------------------------------------------- the CLI in real processes

# A fork server: one process imports mtp (and torch, mlflow, datasets) once, then forks a child per command,
# which runs exactly what `python -m mtp.cli ARGS` runs (sys.exit(mtp.cli.main()), the default traceback on
# an uncaught exception) with its own cwd, stdout/stderr files and rlimits. Each command is a real process
# with a real exit status; only the 3-5 s of imports are paid once.
FORK_SERVER = r"""
import json, os, resource, sys, traceback
import datasets, mlflow, torch  # noqa: F401 - imported once, before forking
import mtp.cli
mtp.cli.build_parser()  # imports every stage module
cases, workers = json.load(sys.stdin), int(sys.argv[1])


def child(case):
    os.chdir(case["cwd"])
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(case[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    for name, value in case.get("limits", {}).items():
        resource.setrlimit(getattr(resource, name), (value, value))
    sys.argv = ["mtp", *case["argv"]]
    try:
        code = mtp.cli.main()
    except SystemExit as e:
        code = e.code
    except BaseException:
        traceback.print_exc()
        code = 1
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


todo, running, done = list(enumerate(cases)), {}, {}
while todo or running:
    while todo and len(running) < workers:
        i, case = todo.pop(0)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(case)
        running[pid] = i
    pid, status, usage = os.wait4(-1, 0)
    i = running.pop(pid)
    done[i] = {"rc": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss * 1024}
print(json.dumps([done[i] for i in range(len(cases))]))
"""


def run_cli(cases, workers=3, timeout=600):
    """cases: [{"argv": [...], "cwd": path, "limits": {RLIMIT_*: n}}] -> [(rc, stdout, stderr, max RSS bytes)].

    SIGXFSZ stays ignored, as in every Python process: a write past RLIMIT_FSIZE fails with EFBIG."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [{**c, "argv": [str(a) for a in c["argv"]], "cwd": str(c["cwd"]),
                 "stdout": f"{tmp}/{i}.out", "stderr": f"{tmp}/{i}.err"} for i, c in enumerate(cases)]
        proc = subprocess.run([sys.executable, "-c", FORK_SERVER, str(workers)], input=json.dumps(jobs), text=True,
                              capture_output=True, env=env(), timeout=timeout)
        assert proc.returncode == 0, proc.stderr[-3000:]
        status = json.loads(proc.stdout.strip().splitlines()[-1])
        return [(s["rc"], Path(j["stdout"]).read_text(), Path(j["stderr"]).read_text(), s["maxrss"])
                for s, j in zip(status, jobs)]


def one_line_error(rc, err, *needles):
    """The CLI's contract for bad input: exit 2, one line `mtp <stage>: error: ...` naming the field or file."""
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert rc == 2, f"exit {rc}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and ": error: " in lines[0], err[-3000:]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in: {lines[0]}"
    return lines[0]


def study(tmp, name="study", **changes):
    """A config file `tmp`/<name>.yaml for the faults study with results and the MLflow store under `tmp`."""
    cfg = faults_config(str(tmp / "results"))
    cfg["tracking"]["uri"] = f"sqlite:///{tmp / 'mlflow.db'}"
    for key, value in changes.items():
        cfg[key] = value
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def with_results(baseline, tmp, model=True):
    """Copy the baseline's tokenized data (and trained model) under tmp/results."""
    base = baseline.wait().results
    shutil.copytree(base / "data", tmp / "results" / "data")
    if model:
        dst = tmp / "results" / MODEL
        dst.mkdir(parents=True)
        for name in ("model.pt", "model.json"):
            shutil.copy(base / MODEL / name, dst / name)
    return tmp / "results"


def snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and "mlflow" not in p.parts}


# ---------------------------------------------------------------- 3: disk full

def test_disk_full_during_checkpoint_write_keeps_the_previous_checkpoint(baseline, tmp_path):
    """RLIMIT_FSIZE between the size of model.pt (4 bytes a parameter) and of a checkpoint (12: weights and
    AdamW's two moments): train 5 steps, then resume to 10 under the limit, so the step-10 checkpoint cannot
    be written. One line naming it, exit 2, the run FAILED; the step-5 checkpoint stays the valid latest one."""
    from mtp.nn.model import ModelConfig, MTPModel
    from mtp.checkpoint import latest_checkpoint
    with_results(baseline, tmp_path, model=False)
    presets = {"wide": {"dim": 128, "n_layers": 3, "n_attn_heads": 4}}
    with torch.device("meta"):
        params = sum(p.numel() for p in MTPModel(ModelConfig(vocab_size=512, n_heads=2, **presets["wide"])).parameters())
    limit = 8 * params
    sweeps = [{"dataset": "code", "sizes": ["wide"], "n_heads": [2]}]
    train = {**faults_config()["train"], "max_steps": 5, "checkpoint_every": 5, "eval_every": 5, "eval_batches": 1}
    cfg5, _ = study(tmp_path, model_presets=presets, sweeps=sweeps, train=train)
    cfg10 = cfg5.with_name("study10.yaml")
    cfg10.write_text(yaml.safe_dump({**yaml.safe_load(cfg5.read_text()), "train": {**train, "max_steps": 10}}))
    args = ["train", "--dataset", "code", "--size", "wide", "--n-heads", "2", "--no-progress"]
    (rc5, _, err5, _), (rc, out, err, _) = run_cli([
        {"argv": [*args, "--config", cfg5], "cwd": tmp_path},
        {"argv": [*args, "--config", cfg10], "cwd": tmp_path, "limits": {"RLIMIT_FSIZE": limit}}], workers=1)
    assert rc5 == 0, err5[-3000:]
    model_dir = tmp_path / "results" / "models" / "code" / "wide-n2"
    ck5 = model_dir / "ckpt" / "step-0000005.pt"
    sizes = [(model_dir / "model.pt").stat().st_size, (tmp_path / "mlflow.db").stat().st_size, ck5.stat().st_size]
    assert max(sizes[:2]) < limit < sizes[2], sizes  # only a checkpoint can reach the limit
    line = one_line_error(rc, err, "step-0000010.pt", "File too large (EFBIG)", "file size limit")
    assert "resuming" in out and "step-0000005.pt" in out
    assert latest_checkpoint(model_dir / "ckpt") == ck5
    assert checkpoint.load(ck5)["step"] == 5
    assert sorted(p.name for p in (model_dir / "ckpt").iterdir()) == ["step-0000005.json", "step-0000005.pt"], line
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mtp-test")
    statuses = [r.info.status for r in client.search_runs([exp.experiment_id], "tags.`mtp.stage` = 'train'",
                                                           order_by=["attributes.start_time DESC"])]
    assert statuses == ["FAILED", "FINISHED"], statuses


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB tmpfs at tmp_path/results (root with CAP_SYS_ADMIN only)."""
    mnt = tmp_path / "results"
    mnt.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip()[:100]}); the RLIMIT_FSIZE test covers disk full")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder):
    """Write a file until the disk is full."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_disk_full_during_result_writes_is_one_clear_line(baseline, tmp_path, small_disk):
    """A full disk (tmpfs) under tokenize, decode, eval and report, each `mtp` process with its own config
    file: each exits 2 with one line naming the file it could not write (ENOSPC); the previous outputs
    (data, model, decode.json, eval_code.json, report) are untouched and still valid, no temporary file is
    left, the runs FAILED. And an MLflow store on the full disk: one line saying MLflow could not write."""
    from mtp import tracking
    results = with_results(baseline, tmp_path)
    for name in ("decode.json", "eval_code.json", "metrics.json"):  # earlier outputs the failed writes must keep
        shutil.copy(baseline.results / MODEL / name, results / MODEL / name)
    shutil.copytree(baseline.results / "report", results / "report")
    stages = {"tokenize": (["tokenize", "--dataset", "code"], "data/code/tokenizer.json"),
              "decode": (["decode", *MODEL_ARGS], f"{MODEL}/decode.json"),
              "eval": (["eval", "code", *MODEL_ARGS], f"{MODEL}/eval_code.json"),
              "report": (["report"], "report/")}
    configs = {stage: study(tmp_path, name=f"study-{stage}")[0] for stage in stages}
    tracking.init(config.load(configs["tokenize"]))  # the shared store exists before parallel jobs touch it
    second = results / "second"  # another study whose MLflow store is on the small disk
    full_store, _ = study(tmp_path, name="study-full-store", results=str(second),
                          tracking={"uri": f"sqlite:///{second / 'mlflow' / 'store.db'}", "experiment": "mtp-test"})
    tracking.init(config.load(full_store))
    fill(results)
    before = snapshot(results)
    cases = [{"argv": [*argv[:2 if argv[0] == "eval" else 1], "--config", configs[stage],
                       *argv[2 if argv[0] == "eval" else 1:]], "cwd": tmp_path} for stage, (argv, _) in stages.items()]
    cases.append({"argv": ["tokenize", "--config", full_store, "--dataset", "code"], "cwd": tmp_path})
    outcomes = run_cli(cases, workers=2)
    for (stage, (_, target)), (rc, out, err, _) in zip(stages.items(), outcomes):
        line = one_line_error(rc, err, "No space left on device (ENOSPC)", "bytes free there")
        assert line.startswith(f"mtp {stage}: error: {results / target}"), line
    rc, out, err, _ = outcomes[-1]
    one_line_error(rc, err, "MLflow could not", "disk is full")
    after = snapshot(results)
    assert after == before, set(after.items()) ^ set(before.items())
    assert not [p for p in results.rglob(".*.tmp")]
    assert_no_partial_file_taken_as_complete(results)  # the earlier outputs still load and match their digests
    for name in ("decode.json", "eval_code.json"):
        assert json.loads((results / MODEL / name).read_text()) == json.loads((baseline.results / MODEL / name).read_text())
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mtp-test")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("mtp.role") != "study"]
    assert sorted(r.data.tags.get("mtp.stage") for r in runs if r.info.status == "FAILED") == \
        sorted(r.data.tags.get("mtp.stage") for r in runs), [(r.data.tags, r.info.status) for r in runs]


def test_disk_full_in_mlflow_and_libraries_is_one_line(monkeypatch, capsys):
    """MLflow's and libraries' own writes: OSError(ENOSPC/EFBIG) or SQLite's 'database or disk is full' become
    one line, through tracking's retry wrapper and, for any other writer, mtp.cli.main."""
    import errno

    from mtp import UserError, tracking
    import mtp.stages.report

    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "/store/mlruns/1/artifacts/model.pt")
    with pytest.raises(UserError, match="MLflow could not log an artifact: No space left on device"):
        tracking._retry(full, "log an artifact")

    def sqlite_full():
        raise RuntimeError("(sqlite3.OperationalError) database or disk is full\n[SQL: INSERT INTO runs ...]")
    with pytest.raises(UserError, match="database or disk is full"):
        tracking._retry(sqlite_full, "log metrics")

    def cache_full(args):
        raise OSError(errno.EFBIG, "File too large", "/home/u/.cache/mtp/datasets/x.arrow")
    monkeypatch.setattr(mtp.stages.report, "run", cache_full)
    capsys.readouterr()
    rc = cli.main(["report", "--config", "whatever.yaml"])
    line = one_line_error(rc, capsys.readouterr().err, "x.arrow", "File too large")
    assert line.startswith("mtp report: error: ")


def test_damaged_parent_json_is_recreated(tiny_cfg):
    """results/mlflow/parent.json not JSON, or JSON without its keys: the next stage finds the study's
    parent run again and rewrites the file (no error, no second parent run)."""
    from mtp import tracking
    info = tracking.init(tiny_cfg)
    path = tracking.parent_file(tiny_cfg)
    for damage in ("{not json", "{}", "[1, 2]"):
        path.write_text(damage)
        assert tracking._parent(tiny_cfg)["parent_run_id"] == info["parent_run_id"]
        assert json.loads(path.read_text()) == info


# ---------------------------------------------------------------- 4 + 5: bad configs, bad files, too little memory

def _set(path, value):
    def change(cfg):
        d = cfg
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return change


def _corrupt(rel, how):
    def change(tmp):
        p = tmp / "results" / rel
        data = p.read_bytes()
        if how == "truncate":
            p.write_bytes(data[:len(data) // 2])
        elif how == "flip":
            p.write_bytes(data[:100] + bytes(b ^ 0x5A for b in data[100:300]) + data[300:])
        else:
            p.write_bytes(how)
    return change


def _foreign_checkpoint(tmp):
    """model.pt replaced by other bytes, its sidecar updated to match: the digest passes, unpickling fails."""
    p = tmp / "results" / MODEL / "model.pt"
    p.write_bytes(os.urandom(4000))
    side = json.loads(p.with_suffix(".json").read_text())
    side["sha256"] = sha256_file(p)
    p.with_suffix(".json").write_text(json.dumps(side))


def _double_dim(cfg):
    cfg["model_presets"]["micro"]["dim"] *= 2


def _huge(cfg):
    cfg["sweeps"][0]["sizes"] = ["1.3B"]
    cfg["train"].update(batch_size=100_000, seq_len=2048)


def _oom(cfg):  # activations of ~3 GiB: the estimate passes, the 3.5 GiB address-space limit does not
    cfg["train"].update(batch_size=2400, max_steps=2, eval_every=2, checkpoint_every=2)


MODEL_ARGS = ["--dataset", "code", "--size", "micro", "--n-heads", "2"]
TRAIN = ["train", *MODEL_ARGS, "--no-progress"]
MISSING_MODEL = lambda t: (t / "results" / MODEL / "model.pt").unlink()  # noqa: E731
# id: (argv, config change, files change, words the one error line must contain)
CASES = {
    "config: wrong type": (TRAIN, _set(["train", "lr"], "fast"), None, ["'train.lr'"]),
    "config: unknown key": (["tokenize", "--dataset", "code"], _set(["colour"], "blue"), None, ["colour"]),
    "config: negative size": (TRAIN, _set(["train", "batch_size"], -3), None, ["'train.batch_size'"]),
    "config: n larger than layers": (TRAIN, _set(["sweeps", 0, "n_heads"], [2, 5]), None, ["'sweeps.0.n_heads'", "layers"]),
    "config: empty sweep": (["tokenize", "--dataset", "code"], _set(["sweeps", 0, "sizes"], []), None, ["'sweeps.0.sizes'"]),
    "config: odd head size": (TRAIN, _set(["model_presets", "micro", "dim"], 30), None, ["'model_presets.micro'"]),
    "config: unknown device": (TRAIN, _set(["train", "device"], "quantum"), None, ["train.device", "quantum"]),
    "config: cuda without a GPU": (TRAIN, _set(["train", "device"], "cuda:0"), None, ["train.device", "cuda:0"]),
    "config: bad tracking uri": (["decode", *MODEL_ARGS], _set(["tracking", "uri"], "foo://bar"), None, ["tracking.uri"]),
    "config: missing corpus files": (["tokenize", "--dataset", "code"],
                                     _set(["datasets", "code", "source"], {"kind": "files", "paths": ["/nonexistent/*.py"]}),
                                     None, ["source.paths", "/nonexistent/*.py"]),
    "config: model not in the sweeps": (["decode", "--dataset", "code", "--size", "1M", "--n-heads", "2"], None, None,
                                        ["code/1M-n2", "sweeps"]),
    "config file: not UTF-8": (["tokenize", "--dataset", "code"], None, "binary", ["study.yaml", "UTF-8"]),
    "config file: bad YAML": (["tokenize", "--dataset", "code"], None, "yaml", ["study.yaml", "YAML"]),
    "config file: a directory": (["tokenize", "--dataset", "code"], None, "directory", ["study.yaml"]),
    "config file: missing": (["tokenize", "--dataset", "code"], None, "missing", ["study.yaml", "not found"]),
    "missing: data before tokenize": (TRAIN, None, lambda t: shutil.rmtree(t / "results" / "data"), ["meta.json", "not found"]),
    "missing: model before decode": (["decode", *MODEL_ARGS], None, MISSING_MODEL, ["model.pt", "not found"]),
    "missing: model before scoring": (["eval", "code", *MODEL_ARGS], None, MISSING_MODEL, ["model.pt", "not found"]),
    "corrupt: val.bin": (["decode", *MODEL_ARGS], None, _corrupt("data/code/val.bin", "flip"), ["val.bin", "sha256"]),
    "corrupt: train.bin cut short": (TRAIN, None, _corrupt("data/code/train.bin", "truncate"), ["train.bin"]),
    "corrupt: meta.json not JSON": (TRAIN, None, _corrupt("data/code/meta.json", b'{"vocab'), ["meta.json", "JSON"]),
    "corrupt: meta.json of something else": (["decode", *MODEL_ARGS], None, _corrupt("data/code/meta.json", b"{}"),
                                             ["meta.json"]),
    "corrupt: tokenizer.json": (["eval", "code", *MODEL_ARGS], None, _corrupt("data/code/tokenizer.json", b"garbage"),
                                ["tokenizer.json"]),
    "corrupt: model.pt cut short": (["decode", *MODEL_ARGS], None, _corrupt(f"{MODEL}/model.pt", "truncate"),
                                    ["model.pt", "corrupt or incomplete"]),
    "corrupt: model.json sidecar": (["decode", *MODEL_ARGS], None, _corrupt(f"{MODEL}/model.json", b"\x00"),
                                    ["model.pt", "corrupt or incomplete"]),
    "corrupt: model.pt not a checkpoint": (["decode", *MODEL_ARGS], None, _foreign_checkpoint,
                                           ["model.pt", "not a readable checkpoint"]),
    "corrupt: MLflow database": (["decode", *MODEL_ARGS], None, lambda t: (t / "mlflow.db").write_bytes(os.urandom(9000)),
                                 ["tracking.uri", "mlflow.db"]),
    "checkpoint of another model": (TRAIN, _double_dim, "ckpt", ["step-0000020.pt", "another model", "ckpt"]),
    "memory: model too large": (["train", "--dataset", "code", "--size", "1.3B", "--n-heads", "2", "--no-progress"],
                                _huge, None, ["not enough memory", "GiB", "train.batch_size"]),
    "memory: allocation fails": (TRAIN, _oom, "oom", ["out of memory", "can't allocate", "estimate", "train.batch_size"]),
}
OOM_LIMIT = 3_500 << 20  # RLIMIT_AS of the "allocation fails" case


def prepare_case(name, baseline, tmp, store):
    """A folder with the study config, results (data and model), MLflow store, damaged as CASES[name] says."""
    argv, cfg_change, files_change, _ = CASES[name]
    with_results(baseline, tmp)
    shutil.copy(store, tmp / "mlflow.db")  # an existing store: creating one costs seconds
    cfg_path, cfg = study(tmp)
    if cfg_change:
        cfg_change(cfg)
        cfg_path.write_text(yaml.safe_dump(cfg))
    if files_change == "binary":
        cfg_path.write_bytes(b"\xff\xfe\x00" + os.urandom(64))
    elif files_change == "yaml":
        cfg_path.write_text("datasets: {code: [unclosed\n")
    elif files_change == "directory":
        cfg_path.unlink()
        cfg_path.mkdir()
    elif files_change == "missing":
        cfg_path.unlink()
    elif files_change == "ckpt":
        shutil.copytree(baseline.results / MODEL / "ckpt", tmp / "results" / MODEL / "ckpt")
    elif callable(files_change):
        files_change(tmp)
    words = 2 if argv[0] == "eval" else 1  # `mtp eval code --config ...`
    case = {"argv": [*argv[:words], "--config", cfg_path, *argv[words:]], "cwd": tmp}
    if files_change == "oom":
        case["limits"] = {"RLIMIT_AS": OOM_LIMIT}
    return case, snapshot(tmp / "results")


@pytest.fixture(scope="module")
def bad_input_outcomes(baseline, tmp_path_factory):
    """Every CASE as `mtp ...` in its own process, folder and MLflow store (three at a time)."""
    from mtp import tracking
    store = tmp_path_factory.mktemp("store")
    tracking.init(config.validate(yaml.safe_load(study(store)[0].read_text())))
    baseline.wait()
    prepared = {name: prepare_case(name, baseline, tmp_path_factory.mktemp("case"), store / "mlflow.db")
                for name in CASES}
    outcomes = run_cli([case for case, _ in prepared.values()])
    return {name: (*outcome, before, snapshot(case["cwd"] / "results"), case)
            for (name, (case, before)), outcome in zip(prepared.items(), outcomes)}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_clear_line_and_writes_nothing(name, bad_input_outcomes):
    """Each bad config, missing or damaged file, or too-small machine: exit 2, one line naming the field or
    file (and for memory the estimate and a batch size or preset that fits), no traceback, no file written."""
    if name == "config: cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rc, out, err, maxrss, before, after, case = bad_input_outcomes[name]
    if name == "memory: allocation fails" and "not enough memory" in err:
        pytest.skip(f"this machine has too little free memory for the estimate to pass: {err.strip()[:200]}")
    one_line_error(rc, err, *CASES[name][3])
    assert after == before, f"files changed: {set(after.items()) ^ set(before.items())}"
    if name == "memory: model too large":
        assert maxrss < 3 << 30, f"refused only after allocating ({maxrss >> 20} MiB)"


# ---------------------------------------------------------------- 4, generated: hypothesis through mtp.cli.main

def _paths(obj, prefix=()):
    if prefix:
        yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


PATHS = sorted(_paths(faults_config()), key=str)
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 9, 10 ** 9), st.floats(),
                 st.text(max_size=6), st.lists(st.integers(-3, 3), max_size=3),
                 st.dictionaries(st.text(max_size=4), st.integers(-2, 2), max_size=2))


def _named_field(line):
    """The dotted field a config error line names ('field \'a.b\': ...'), as a tuple of strings."""
    assert "field '" in line, f"the error names no field: {line}"
    name = line.split("field '", 1)[1].split("'", 1)[0]
    return () if name == "(top level)" else tuple(name.split("."))


def _blames_the_change(field, path, line):
    """Whether a config error naming `field` is about the change at `path`: the field itself or inside it;
    the object holding it, with the key named (a required key deleted, an unknown key added) or as a whole
    (a source whose `kind` no longer matches its keys); or where a cross-field rule surfaces: the train
    section checked per sweep (sweeps.<i>.train.<key>), a preset's layers against the sweep's n
    (sweeps.<i>.n_heads), a dataset deleted or renamed (sweeps.<i>.dataset), a preset deleted (sweeps.<i>.sizes)."""
    path = tuple(str(p) for p in path)
    if field[:len(path)] == path:
        return True
    if path[:len(field)] == field:
        nxt = path[len(field)] if len(path) > len(field) else None
        emptied = "should be non-empty" in line or "is too short" in line  # its only key or item deleted
        named = nxt is not None and re.search(rf"\b{re.escape(nxt)}\b", line.split(": field '", 1)[1])
        return (nxt is None or nxt.isdigit() or named or "not_a_key" in line or field[-1:] == ("source",)
                or emptied)  # an item of a list: the list named; the key named; a source as a whole
    if field[:1] == ("sweeps",) and len(field) > 2:
        rule = field[2:]
        return ((rule[0] == "train" and path[:1] == ("train",) and
                 (rule[1:len(path)] == path[1:] or path[1:][:len(rule) - 1] == rule[1:]))
                or (rule == ("n_heads",) and path[:2] == ("model_presets", "micro"))
                or (rule == ("train", "seq_len") and path[:2] == ("model_presets", "micro"))
                or (rule == ("dataset",) and path[:2] == ("datasets", "code") and len(path) == 2)
                or (rule == ("sizes",) and path[:1] == ("model_presets",) and len(path) <= 2))
    return False


def _assert_pipeline_invariants(cfg):
    """What a config that validates must satisfy for the pipeline (independently of the schema code):
    every sweep's dataset defined; every size a preset with an even, whole head size, more layers than
    any n, and room for the training sequence; the training numbers in their ranges."""
    from mtp.nn.model import PRESETS
    presets = {**PRESETS, **cfg.get("model_presets", {})}
    assert cfg["sweeps"], "no sweep"
    for sweep in cfg["sweeps"]:
        assert sweep["dataset"] in cfg["datasets"], sweep
        train = {**cfg["train"], **sweep.get("train", {})}
        assert sweep["sizes"] and sweep["n_heads"], sweep
        for size in sweep["sizes"]:
            spec = presets[size]
            assert spec["dim"] % spec["n_attn_heads"] == 0 and spec["dim"] // spec["n_attn_heads"] % 2 == 0, spec
            assert all(isinstance(n, int) and 1 <= n < spec["n_layers"] for n in sweep["n_heads"]), (spec, sweep)
            assert train["seq_len"] <= spec.get("max_seq_len", 4096), (spec, train)
        assert train["lr"] > 0 and 0 <= train["min_lr_ratio"] <= 1 and train["grad_clip"] > 0, train
        for key in ("batch_size", "grad_accum", "max_steps", "eval_every", "checkpoint_every", "eval_batches"):
            assert isinstance(train[key], int) and not isinstance(train[key], bool) and train[key] >= 1, (key, train)
    for name, ds in cfg["datasets"].items():
        assert 0 < ds["val_fraction"] < 1 and ds["source"]["kind"] in ("stdlib", "files", "json", "hub",
                                                                        "polynomial", "induction"), (name, ds)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), op=st.sampled_from(["set", "delete", "add"]), value=JUNK)
def test_generated_bad_configs_are_one_clear_line(path, op, value, tmp_path, monkeypatch, capsys):
    """Any one change anywhere in the config (a wrong type, a negative or huge number, an empty list, a
    deleted or an unknown key), then `mtp train` (no data yet): exit 2 and one line. When the config is
    invalid the line names the changed field (or the object holding it, or the cross-field rule it broke);
    when it validates, the validated config satisfies the pipeline's invariants and the line names the
    missing meta.json (or, for a changed device or sweep, the device or the model no longer swept). Run
    in-process through mtp.cli.main, the function `python -m mtp.cli` runs, so hundreds of cases take seconds."""
    import copy
    monkeypatch.chdir(tmp_path)  # relative `results` values land here, where no data exists
    cfg = copy.deepcopy(faults_config())
    parent = cfg
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if op == "set":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif isinstance(parent[key], dict):
        parent[key]["not_a_key"] = value
    else:
        parent[key] = {"not_a_key": value}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    rc = cli.main(["train", "--config", str(tmp_path / "c.yaml"), *MODEL_ARGS, "--no-progress"])
    err = capsys.readouterr().err
    line = one_line_error(rc, err)
    try:
        checked = config.validate(copy.deepcopy(cfg))
    except Exception:  # noqa: BLE001 - an invalid config: the line must be about the change
        assert line.startswith(f"mtp train: error: {tmp_path / 'c.yaml'}: field '"), line
        assert _blames_the_change(_named_field(line), path, line), (path, op, value, line)
        return
    _assert_pipeline_invariants(checked)
    if path[:2] == ("train", "device"):
        assert "train.device" in line, line
    elif path[0] == "sweeps" and "not in the config's sweeps" in line:
        assert "code/micro-n2" in line, line
    else:
        assert "meta.json" in line and "not found" in line, (path, op, value, line)


@pytest.mark.parametrize("path, value", [(("datasets", "code", "val_fraction"), float("nan")),
                                         (("train", "lr"), float("nan")), (("train", "lr"), float("inf")),
                                         (("eval", "code", "timeout_s"), float("nan")),
                                         (("train", "batch_size"), 8.0), (("train", "max_steps"), 1e300)], ids=str)
def test_numbers_the_schema_lets_through_are_refused(path, value):
    """A number field set to NaN or infinity (YAML .nan / .inf), or an integer field set to a whole float
    (YAML 8.0), is refused with the field named."""
    cfg = yaml.safe_load(yaml.safe_dump(faults_config()))
    parent = cfg
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    cfg = yaml.safe_load(yaml.safe_dump(cfg))
    with pytest.raises(Exception, match=re.escape(f"field '{'.'.join(path)}'")):
        config.validate(cfg)


@pytest.fixture(scope="module")
def decode_case(baseline, tmp_path_factory):
    """A study folder for in-process `mtp decode` with a light decode section and an existing MLflow store."""
    from mtp import tracking
    tmp = tmp_path_factory.mktemp("damaged")
    with_results(baseline, tmp)
    cfg_path, cfg = study(tmp, decode={"num_prompts": 1, "prompt_len": 8, "max_new_tokens": 4, "batch_sizes": [1],
                                       "repeats": 1})
    tracking.init(config.load(cfg_path))
    return tmp, cfg_path


DAMAGEABLE = ["data/code/meta.json", "data/code/val.bin", f"{MODEL}/model.pt", f"{MODEL}/model.json"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(DAMAGEABLE), how=st.sampled_from(["flip", "truncate", "zero", "append"]),
       where=st.floats(0, 1), length=st.integers(1, 64))
def test_generated_damaged_files_are_caught(target, how, where, length, decode_case, baseline, capsys, monkeypatch):
    """A byte range of any file decode reads flipped, zeroed, cut off or extended: `mtp decode` either
    succeeds with a complete decode.json (the bytes did not matter) or exits 2 with one line naming the file,
    and writes no decode.json."""
    tmp, cfg_path = decode_case
    monkeypatch.chdir(tmp)  # model.pt names its data folder as the config did: results/... relative to the study
    for rel in DAMAGEABLE:
        shutil.copy(baseline.results / rel, tmp / "results" / rel)
    out = tmp / "results" / MODEL / "decode.json"
    out.unlink(missing_ok=True)
    p = tmp / "results" / target
    data = bytearray(p.read_bytes())
    at = int(where * (len(data) - 1))
    if how == "flip":
        data[at:at + length] = bytes(b ^ 0xFF for b in data[at:at + length])
    elif how == "zero":
        data[at:at + length] = bytes(len(data[at:at + length]))
    elif how == "truncate":
        data = data[:at]
    else:
        data += b"\x00" * length
    p.write_bytes(bytes(data))
    capsys.readouterr()
    rc = cli.main(["decode", "--config", str(cfg_path), *MODEL_ARGS])
    err = capsys.readouterr().err
    if rc == 0:
        assert json.loads(out.read_text())["per_batch"]
    else:
        line = one_line_error(rc, err)
        assert Path(target).name in line, line
        assert not out.exists()


# ---------------------------------------------------------------- 5: the memory estimate

def test_memory_advice_names_a_batch_or_a_preset_that_fits(monkeypatch):
    """Pure: with the available memory set, the advice is a smaller batch (same tokens per step) when the
    parameters fit, else the largest preset whose estimate fits."""
    from mtp.training import memory
    from mtp.nn.model import PRESETS, ModelConfig
    mcfg = ModelConfig.from_preset("1.3B", 32000, n_heads=4)
    tc = {"batch_size": 32, "seq_len": 2048, "grad_accum": 1, "backward": "memory_efficient"}
    est = memory.estimate_memory(mcfg, tc, torch.float32)
    cpu = torch.device("cpu")
    monkeypatch.setattr(memory, "available_memory", lambda device: est["fixed"] + 5 * est["per_sample"])
    need, free, text = memory.memory_advice(mcfg, tc, torch.float32, cpu, "1.3B")
    assert need > free and "use train.batch_size 5 with train.grad_accum 7" in text, text
    monkeypatch.setattr(memory, "available_memory", lambda device: est["fixed"] // 3)
    need, free, text = memory.memory_advice(mcfg, tc, torch.float32, cpu, "1.3B")
    assert "even train.batch_size 1 does not fit" in text
    preset = text.split("the largest that fits: ")[1].split(")")[0]
    small = ModelConfig(vocab_size=32000, n_heads=4, **PRESETS[preset])
    assert memory.estimate_memory(small, {**tc, "batch_size": 1}, torch.float32)["total"] <= free
    checkpointed = memory.estimate_memory(mcfg, {**tc, "activation_checkpointing": True}, torch.float32)
    assert checkpointed["per_sample"] < est["per_sample"] / 3


def test_memory_estimate_is_close_to_what_a_step_uses():
    """The estimate against the peak RSS growth of one real training step (3M preset, CPU float32): within
    a factor of 1.6 either way, so a refusal is never far off."""
    script = """
import resource, psutil, torch
from mtp.nn.model import ModelConfig, MTPModel
from mtp.training.memory import estimate_memory
from mtp.training.step import head_targets, make_optimizer, mtp_backward
torch.set_num_threads(2)
tc = {"batch_size": 8, "seq_len": 256, "backward": "memory_efficient", "lr": 1e-3, "weight_decay": 0.1}
mcfg = ModelConfig.from_preset("3M", 8192, n_heads=2)
est = estimate_memory(mcfg, tc, torch.float32)["total"]
rss0 = psutil.Process().memory_info().rss
model = MTPModel(mcfg)
opt = make_optimizer(model, tc)
x, ys = head_targets(torch.randint(0, 8192, (8, 258)), 2)
mtp_backward(model, x, ys)
opt.step()
print(est, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env(), timeout=300)
    est, used = map(int, out.stdout.split())
    assert used / 1.6 < est < used * 1.6, (est, used)


# ---------------------------------------------------------------- 1, vLLM: kill -9 during `mtp vllm`

@pytest.mark.slow
def test_kill9_during_vllm_leaves_no_process_and_rerun_completes(baseline, workdir):
    """The faults study's model served by vLLM (no speculation, then our heads; batch 1): a seeded SIGKILL of
    the vllm job leaves no vLLM engine or worker process behind and no vllm.json; the
    rerun completes, its outputs equal native greedy decoding (the stage's cross-check) and its acceptance
    equals the native engine's tokens per forward; the killed MLflow run is superseded, none RUNNING."""
    pytest.importorskip("vllm")
    rng = random.Random(SEED + 1)
    wd = use_faults_config(workdir)
    cfg = yaml.safe_load((wd / ".test" / "config.yaml").read_text())
    cfg["vllm"] = {"enabled": True, "batch_sizes": [1], "repeats": 1, "ngram": False, "draft_model": False}
    (wd / ".test" / "config.yaml").write_text(yaml.safe_dump(cfg))
    results = wd / ".test" / "results"
    base = baseline.wait().results
    shutil.copytree(base / "data", results / "data")  # copy2: mtimes kept, so Snakemake reruns nothing upstream
    shutil.copytree(base / MODEL, results / MODEL, ignore=shutil.ignore_patterns("ckpt"))
    target = f"results/{MODEL}/vllm.json"
    fault_bin = install_wrapper(wd / "faultbin")
    before = {p.pid for p in psutil.process_iter()}
    # The job alone: its engine processes must then die by themselves (killing the whole tree would prove nothing)
    kills, out = run_with_faults(wd, fault_bin, [("vllm", "timer")], False, rng, "vllm", target)
    deadline = time.monotonic() + 30
    while True:  # vLLM's engine and worker processes die with the stage (PR_SET_PDEATHSIG)
        left = []
        for p in psutil.process_iter():
            try:
                if p.pid not in before and str(wd) in p.cwd():
                    left.append(f"{p.pid} {' '.join(p.cmdline())[:100]}")
            except psutil.Error:
                pass
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, f"processes outlived the killed vllm job: {left}"
    # Killed mid-run or after writing it (the wrapper holds a finished job until the kill): Snakemake deletes
    # a failed job's outputs, so there is no vllm.json either way
    assert not (results / MODEL / "vllm.json").exists(), f"vllm.json left by the killed job; {kills}\n{out[-3000:]}"
    final = subprocess.run(snakemake_cmd("--rerun-incomplete", target), cwd=wd, env=env(), capture_output=True,
                           text=True, timeout=900)
    assert final.returncode == 0, (final.stdout + final.stderr)[-5000:]
    print("\n" + "\n".join(kills))
    v = json.loads((results / MODEL / "vllm.json").read_text())
    assert v["crosscheck"]["ok"], v["crosscheck"]["problems"]
    native = json.loads((results / MODEL / "decode.json").read_text())["per_batch"][0]["tokens_per_forward"]
    heads = next(c for c in v["configs"] if c["name"] == "heads_k1")["per_batch"][0]
    assert heads["mean_acceptance_length"] == pytest.approx(native)
    assert heads["outputs"] == v["crosscheck"]["native_greedy"]
    runs = [r for r in child_runs(wd / ".test" / "mlflow.db") if r.data.tags["mtp.stage"] == "vllm"]
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    live = [r for r in runs if "mtp.superseded" not in r.data.tags]
    assert len(live) == 1 and live[0].info.status == "FINISHED"
