"""MLFLOW_TRACKING_URI pointing at an `mlflow server`: every stage logs there, artifacts included."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import pytest

from conftest import BIN


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "artifacts")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("mlflow server did not start")
            time.sleep(1)
    yield url
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_tiny_pipeline_logs_to_a_remote_server(server, workdir):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "MLFLOW_TRACKING_URI": server}
    out = subprocess.run([str(BIN / "snakemake"), "--cores", "2", "--directory", ".test", "--until", "time_decoding",
                          "--config", 'sweeps=[{"dataset": "code", "sizes": ["micro"], "n_heads": [1, 2]}]'],
                         cwd=workdir, env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert not (workdir / ".test" / "mlflow.db").exists()  # nothing went to the local default store
    client = mlflow.MlflowClient(server)
    exp = client.get_experiment_by_name("mtp-test")
    runs = client.search_runs([exp.experiment_id])
    stages = sorted(r.data.tags.get("mtp.stage", "study") for r in runs)
    assert stages == ["decode", "decode", "study", "tokenize", "train", "train"]
    for r in runs:
        if r.data.tags.get("mtp.stage") != "study":
            assert r.info.status == "FINISHED"
    train = next(r for r in runs if r.data.tags.get("mtp.stage") == "train")
    names = {a.path for a in client.list_artifacts(train.info.run_id)}
    assert "metrics.json" in names and "checkpoint" in names
    local = client.download_artifacts(train.info.run_id, "metrics.json", str(workdir))
    assert '"val_loss_head_1"' in open(local).read()
    assert len(client.get_metric_history(train.info.run_id, "loss")) > 0
