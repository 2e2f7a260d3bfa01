import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from mtp import UserError, tracking


def runs(cfg, **filters):
    mlflow.set_tracking_uri(tracking.uri(cfg))
    exp = mlflow.get_experiment_by_name(cfg["tracking"]["experiment"])
    return mlflow.search_runs([exp.experiment_id], output_format="list")


def test_uri_precedence(tiny_cfg, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.uri(tiny_cfg) == tiny_cfg["tracking"]["uri"]
    assert tracking.uri({"tracking": {"uri": None}}) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert tracking.uri(tiny_cfg) == "http://127.0.0.1:1"


def test_eight_parallel_jobs_lose_nothing(tiny_cfg, tmp_path):
    info = tracking.init(tiny_cfg)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(tiny_cfg))
    script = textwrap.dedent(f"""
        import json, sys
        from mtp import tracking
        cfg = json.load(open({str(cfg_path)!r}))
        i = int(sys.argv[1])
        with tracking.child_run(cfg, "train", dataset="code", size="micro", n=i) as run:
            run.params({{"i": i, "nested": {{"a": i}}}})
            for step in range(5):
                run.log({{"loss": 10 - step, "loss_head_1": i}}, step=step)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)]) for i in range(8)]
    assert [p.wait(timeout=300) for p in procs] == [0] * 8
    children = [r for r in runs(tiny_cfg) if r.data.tags.get("mlflow.parentRunId") == info["parent_run_id"]]
    assert len(children) == 8
    assert sorted(int(r.data.tags["mtp.n"]) for r in children) == list(range(8))
    client = mlflow.MlflowClient()
    for r in children:
        assert r.info.status == "FINISHED"
        assert len(client.get_metric_history(r.info.run_id, "loss")) == 5
        assert r.data.params["nested.a"] == r.data.tags["mtp.n"]


def test_rerun_supersedes_and_failure_is_marked(tiny_cfg):
    with tracking.child_run(tiny_cfg, "decode", dataset="code", size="micro", n=2) as first:
        pass
    with pytest.raises(UserError):
        with tracking.child_run(tiny_cfg, "decode", dataset="code", size="micro", n=2) as second:
            raise UserError("boom")
    client = mlflow.MlflowClient()
    assert client.get_run(first.run_id).data.tags["mtp.superseded"] == second.run_id
    assert client.get_run(second.run_id).info.status == "FAILED"
    assert tracking.find_run(tiny_cfg, "decode", dataset="code", size="micro", n=2) == second.run_id


def test_killed_job_is_not_left_running(tiny_cfg, tmp_path):
    """kill -9 leaves RUNNING; the rerun of the same job marks it KILLED and superseded."""
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(tiny_cfg))
    tracking.init(tiny_cfg)
    script = f"""
import json, os, signal
from mtp import tracking
cfg = json.load(open({str(cfg_path)!r}))
with tracking.child_run(cfg, "train", dataset="code", size="micro", n=1) as run:
    print(run.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    killed = out.stdout.strip()
    client = mlflow.MlflowClient(tracking.uri(tiny_cfg))
    assert client.get_run(killed).info.status == "RUNNING"
    with tracking.child_run(tiny_cfg, "train", dataset="code", size="micro", n=1):
        pass
    assert client.get_run(killed).info.status == "KILLED"
    assert "mtp.superseded" in client.get_run(killed).data.tags


def test_sigterm_marks_the_run_killed(tiny_cfg, tmp_path):
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(tiny_cfg))
    tracking.init(tiny_cfg)
    script = f"""
import json, os, signal, time
from mtp import tracking
cfg = json.load(open({str(cfg_path)!r}))
with tracking.child_run(cfg, "train", dataset="code", size="micro", n=3) as run:
    print(run.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert mlflow.MlflowClient(tracking.uri(tiny_cfg)).get_run(out.stdout.strip()).info.status == "KILLED"


def test_unreachable_server_is_a_clear_error(tiny_cfg, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(UserError, match="unreachable"):
        tracking.init(tiny_cfg)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing-untagged"])
def test_init_tags_the_experiment_as_model_training(tiny_cfg, existing):
    """MLflow's experiment-kind tag says 'model training' (not GenAI), on a new experiment and on an older one."""
    client = mlflow.MlflowClient(tracking.uri(tiny_cfg))
    if existing:  # made before mtp tagged its experiments
        exp_id = client.create_experiment(tiny_cfg["tracking"]["experiment"])
        assert "mlflow.experimentKind" not in client.get_experiment(exp_id).tags
    info = tracking.init(tiny_cfg)
    tags = client.get_experiment(info["experiment_id"]).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def _proc_stat(pid):
    """(state, ppid, pgrp) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _live(pids):
    return [p for p in pids if (st := _proc_stat(p)) and st[0] != "Z"]


def _descendants(pid):
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        st = _proc_stat(stat.parent.name)
        if st:
            children.setdefault(st[1], []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _group(pgid):
    return [int(d.parent.name) for d in Path("/proc").glob("[0-9]*/stat")
            if (st := _proc_stat(d.parent.name)) and st[0] != "Z" and st[2] == pgid]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_mtp_ui_stops_its_whole_server(tiny_cfg, tmp_path, sig):
    """`mtp ui` answers on 127.0.0.1 with the runs-view URL; Ctrl-C / SIGTERM to it leaves no server process."""
    info = tracking.init(tiny_cfg)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(tiny_cfg))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    log = tmp_path / "ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mtp.cli", "ui", "--config", str(cfg_path), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    server = []
    try:
        deadline = time.monotonic() + 240
        while "MLflow UI at" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert f"/#/experiments/{info['experiment_id']}?workflowType=machine_learning" in log.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.status == 200
        server = _descendants(proc.pid)  # the mlflow command and its uvicorn worker
        assert len(server) >= 2, server
        pgid = server[0]
        assert _proc_stat(pgid)[2] == pgid, "the server leads its own process group"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 128 + sig, log.read_text()
        deadline = time.monotonic() + 3
        while (_live(server) or _group(pgid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _live(server) == [] and _group(pgid) == []
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _live(server):  # only after a failure: the ones this test started
            os.kill(pid, signal.SIGKILL)


def test_a_trained_model_is_a_logged_model_and_its_export_loads_with_the_transformers_flavour(tiny_cfg, tmp_path):
    """MLflow 3's Models tab: `mtp train` makes a logged model of its run (final metrics linked, model.json and
    metrics.json its artifacts); `mtp export` adds the HF export, which mlflow.transformers loads, and the loaded
    model's logits are head 1's."""
    import torch

    from mtp import checkpoint, config
    from mtp.cli import main
    from mtp.data import tokenize
    from mtp.stages.train import train
    cfg = {**tiny_cfg, "train": {**tiny_cfg["train"], "max_steps": 4, "eval_every": 2, "checkpoint_every": 2}}
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(__import__("yaml").safe_dump(cfg))
    tokenize(cfg, "code")
    entry = config.find_model(cfg, "code", "micro", 2)
    metrics = train(cfg, entry, progress=False)
    saved = json.loads((Path(entry.dir) / "metrics.json").read_text())
    model_id = saved["logged_model_id"]
    tracking._mlflow(cfg)
    lm = mlflow.get_logged_model(model_id)
    assert lm.source_run_id == saved["train_run_id"] and str(lm.status).endswith("READY")
    linked = {m.key: m.value for m in lm.metrics}
    assert linked["val_loss_head_2"] == pytest.approx(metrics["val_loss_head_2"]) and "steps" in linked
    assert lm.params["train.lr"] == str(cfg["train"]["lr"]) and lm.params["model.n_heads"] == "2"
    assert main(["export", "--config", str(cfg_path), "--dataset", "code", "--size", "micro", "--n-heads", "2"]) in (0, None)
    loaded = mlflow.transformers.load_model(f"models:/{model_id}", return_type="components")
    ours, _ = checkpoint.load_model(entry.dir)
    x = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(loaded["model"](x).logits, ours(x, heads=[0])[0], rtol=1e-4, atol=1e-4)
