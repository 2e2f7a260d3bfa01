import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtp import config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: mtp, snakemake


@pytest.fixture
def one_thread():
    """torch on one thread for the test (tiny matmuls: several threads only contend, 30x slower on a loaded 2-core
    machine). Modules of such tests: pytestmark = pytest.mark.usefixtures("one_thread")."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_cfg(tmp_path):
    """The .test config, with results and the MLflow store under tmp_path."""
    raw = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    raw["results"] = str(tmp_path / "results")
    raw["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return config.validate(raw)


def copy_workflow(dst):
    """A copy of the workflow (workflow/: Snakefile, rules, profiles; configs) in dst to run Snakemake in -> dst."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in ("workflow", "envs", "config.yaml", ".test"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, dst / item, symlinks=True,
                            ignore=shutil.ignore_patterns("results", "mlflow.db*", ".snakemake", "mlruns"))
        elif src.exists():
            shutil.copy(src, dst / item)
    (dst / "mtp").symlink_to(ROOT / "mtp")  # the schema symlink points into the package
    return dst


def snakemake_env(path_first=None, **extra):
    """The environment Snakemake runs in: the venv's bin (mtp, snakemake) on PATH, after path_first if given."""
    path = ":".join(str(p) for p in (path_first, BIN, os.environ["PATH"]) if p)
    out = {**os.environ, "PATH": path, **extra}
    out.pop("MLFLOW_TRACKING_URI", None)
    return out


@pytest.fixture
def workdir(tmp_path):
    return copy_workflow(tmp_path)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """The tiny study (.test/config.yaml) run once, locally, with `snakemake --cores 2`: its workflow folder
    (results in .test/results) and Snakemake's output. tests/test_pipeline.py checks it; tests/test_slurm.py
    compares a run through Slurm with it."""
    wd = copy_workflow(tmp_path_factory.mktemp("tiny-study"))
    run = subprocess.run([str(BIN / "snakemake"), "--cores", "2", "--directory", ".test"], cwd=wd,
                         capture_output=True, text=True, env=snakemake_env(), timeout=1500)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    return wd, run.stdout + run.stderr
