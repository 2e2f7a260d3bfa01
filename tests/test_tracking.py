import json
import subprocess
import sys
import textwrap

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
