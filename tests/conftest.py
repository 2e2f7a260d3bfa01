import shutil
import sys
from pathlib import Path

import pytest
import yaml

from mtp import config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: mtp, snakemake


@pytest.fixture
def tiny_cfg(tmp_path):
    """The .test config, with results and the MLflow store under tmp_path."""
    raw = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    raw["results"] = str(tmp_path / "results")
    raw["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return config.validate(raw)


@pytest.fixture
def workdir(tmp_path):
    """A copy of the workflow (Snakefile, rules, configs) to run Snakemake in."""
    for item in ("Snakefile", "workflow", "envs", "config.yaml", ".test"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, tmp_path / item, symlinks=True, ignore=shutil.ignore_patterns("results", "mlflow.db*"))
        else:
            shutil.copy(src, tmp_path / item)
    (tmp_path / "mtp").symlink_to(ROOT / "mtp")  # the schema symlink points into the package
    return tmp_path
