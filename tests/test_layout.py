"""The package's layout: dependencies run one way (no import cycle among mtp's modules), and what the
Snakefile and its rules import at parse time never imports torch."""
import os
import subprocess

from conftest import BIN


def test_dry_run_without_torch(workdir, tmp_path_factory):
    """`snakemake -n` of the default study with a torch that cannot be imported: config validation, sweep
    expansion and every input function work without it (parsing the DAG must not load torch)."""
    blocked = tmp_path_factory.mktemp("no_torch")
    (blocked / "torch").mkdir()
    (blocked / "torch" / "__init__.py").write_text(
        'raise ImportError("torch imported while Snakemake parses the workflow (tests/test_layout.py)")\n')
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([str(BIN / "snakemake"), "-n", "--cores", "1"], cwd=workdir, capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "train_model" in out.stdout + out.stderr
