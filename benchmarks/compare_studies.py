"""Compare two results directories of the same study: weights bit for bit, JSON results with timings aside.

    python benchmarks/compare_studies.py BEFORE/results AFTER/results

Used to show that a refactoring changed no behaviour: run the tiny study (`snakemake --cores 2 --directory
.test`) on both commits (e.g. two `git worktree`s, each run with PYTHONPATH=<worktree> from outside the main
checkout), then compare. Every model.pt's tensors must be equal; every JSON file under models/ equal outside
the keys that hold timings, memory, run ids and paths (SKIP), a result file as its class reads it
(mtp.result_types: a field an older schema named otherwise compares under its new name); the report's CSVs are listed when they differ
(their timing columns always do) for a look at the diff. tests/test_slurm.py compares a Slurm run of the tiny
study with a local one through compare().
"""
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from mtp import results

SKIP = re.compile(r"(seconds|_s$|_s_|per_s|speedup|time|wall|run_id|spread|unstable|_all$|elapsed|date|"
                  r"duration|throughput|uri|path|_dir$|^dir$|host|pid|mem|rss|commit|git|min$|max$|range|"
                  r"cpu|version|started|finished|ratio|sha256|logged_model)", re.I)  # sha256: a file's digest (model.pt's
# holds its run id and timings; its tensors are compared themselves); logged_model: the MLflow model id


def walk(a, b, where, diffs):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if SKIP.search(str(k)):
                continue
            if k not in a or k not in b:
                diffs.append(f"{where}.{k}: only in {'after' if k not in a else 'before'}")
            else:
                walk(a[k], b[k], f"{where}.{k}", diffs)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{where}: list length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{where}[{i}]", diffs)
    elif a != b:
        diffs.append(f"{where}: {str(a)[:60]} vs {str(b)[:60]}")


def compare(A, B):
    """Results folders A and B -> ({"weights": models compared, "json": files, "csv": report tables}, [differences])."""
    A, B = Path(A), Path(B)
    counts, diffs = {"weights": 0, "json": 0, "csv": 0}, []
    for pa in sorted(A.joinpath("models").rglob("*")):
        pb = B / pa.relative_to(A)
        if pa.is_dir() or "ckpt" in pa.parts or "hf" in pa.parts[-2:-1] or "hf-drafter" in pa.parts:
            continue
        if not pb.exists():
            diffs.append(f"{pa.relative_to(A)}: missing after")
            continue
        if pa.suffix == ".pt":
            sa, sb = torch.load(pa, weights_only=False), torch.load(pb, weights_only=False)
            for k, t in sa["model"].items():
                if not torch.equal(t, sb["model"][k]):
                    diffs.append(f"{pa.relative_to(A)}: tensor {k} differs")
            counts["weights"] += 1
        elif pa.suffix == ".json":
            a, b = json.loads(pa.read_text()), json.loads(pb.read_text())
            cls = next((k.type for k in results.kinds().values() if k.file == pa.name), None)
            if cls is not None:  # a result file: as the report reads it
                a, b = asdict(cls.read(a)), asdict(cls.read(b))
            walk(a, b, str(pa.relative_to(A)), diffs)
            counts["json"] += 1
    for pa in sorted(A.joinpath("report").glob("*.csv")):
        pb = B / pa.relative_to(A)
        if not pb.exists():
            diffs.append(f"{pa.relative_to(A)}: missing after")
            continue
        counts["csv"] += 1
        if pa.read_text() != pb.read_text():
            diffs.append(f"{pa.relative_to(A)}: differs (timings in it?)")
    return counts, diffs


if __name__ == "__main__":
    counts, diffs = compare(sys.argv[1], sys.argv[2])
    print(json.dumps(counts))
    print("\n".join(diffs) if diffs else "no differences")
