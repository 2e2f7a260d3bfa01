"""Loading the study: every model of the config with its result files (or why each is absent), the optional
train benchmark, and the fields that several result files share (output quality, speed-up spreads).

Each result file is read into its class of mtp.result_types (the sections read attributes). Also the small
accessors every section uses on numbers and records (num, ratio, order, baseline, pairs), and the status section
(which result file each model has).
"""
import math
from dataclasses import dataclass, field
from pathlib import Path

from mtp import UserError, head_types, presets
from mtp.result_types import BenchTrain, SchemaError
from mtp.results import BENCH_TRAIN, kinds
from mtp.report.verdicts import DEGENERATE
from mtp.spec import ModelSpec

def result_files():
    """{key: file name} of every per-model result file (mtp.results)."""
    return {k: kind.file for k, kind in kinds().items()}


def writer(key):
    """The command that writes result file `key`."""
    return kinds()[key].writer


def shape_of(cfg, size):
    """dim, n_layers, n_attn_heads of a size preset and its non-embedding parameters ("params": L blocks of
    attention 4d^2 + SwiGLU 3d*hidden, the same for every n: heads replace trunk blocks)."""
    p = presets.preset(size, cfg.get("model_presets"))
    return {"dim": p["dim"], "n_layers": p["n_layers"], "n_attn_heads": p["n_attn_heads"],
            "params": p["n_layers"] * presets.block_matrix_params(p["dim"])}


def read_result(path, cls):
    """(data, status): status 'ok', 'missing' or 'unreadable: ...'; data: the file read into `cls` (a
    mtp.result_types.ResultFile)."""
    from mtp.io import read_json
    path = Path(path)
    if not path.exists():
        return None, "missing"
    try:
        data = read_json(path)
    except UserError as e:
        return None, f"unreadable: {e}"
    if not isinstance(data, dict):
        return None, "unreadable: not a JSON object"
    try:
        return cls.read(data), "ok"
    except SchemaError as e:
        return None, f"unreadable: {e}"


@dataclass
class ModelRecord:
    """One model of the study as the report reads it: its mtp.spec.ModelSpec (whose fields and properties it answers
    to: dataset, slot, size (the preset), head_type, seed, family, n_heads, name, dir, init_from, train), what its
    dataset is, its shape, and each result file read into its class of mtp.result_types (or why it is absent)."""
    spec: ModelSpec
    task: str
    tokenizer: str
    dim: int
    n_layers: int
    n_attn_heads: int
    params: int  # non-embedding parameters (shape_of)
    results: dict = field(default_factory=dict)  # result kind (mtp.results) -> its object, or None
    status: dict = field(default_factory=dict)  # result kind -> "ok", "missing", "unreadable: ..." or why not asked

    def __getattr__(self, name):  # only for names the record does not hold itself: the spec's
        if name == "spec":
            raise AttributeError(name)
        return getattr(self.spec, name)

    @classmethod
    def of(cls, cfg, m):
        """The record of ModelSpec m, without results."""
        from mtp.config import task_of
        ds = cfg["datasets"][m.dataset]
        return cls(spec=m, task=task_of(ds), tokenizer=ds["tokenizer"]["kind"], **shape_of(cfg, m.size))


def load_study(cfg):
    """One ModelRecord per model of the config, with each result file (or why it is absent)."""
    from mtp.config import models
    records, result_kinds = [], kinds()
    for m in models(cfg):
        rec = ModelRecord.of(cfg, m)
        for key, kind in result_kinds.items():
            why = kind.why_absent(cfg, rec.task, m.n_heads, m.head_type)  # a file the config does not ask for may be stale: not read
            data, status = read_result(Path(m.dir) / kind.file, kind.type) if why is None else (None, why)
            rec.results[key], rec.status[key] = data, status
        records.append(rec)
    return records


def load_bench(cfg):
    return read_result(Path(cfg["results"]) / BENCH_TRAIN, BenchTrain)


def missing_notes(records, keys):
    """Per result file of `keys`: which models lack it and why (missing, unreadable, disabled)."""
    notes = []
    for key in keys:
        by_reason = {}
        for r in records:
            s = r.status[key]
            if s not in ("ok", "n/a"):
                by_reason.setdefault(s, []).append(r.name)
        if all(r.status[key] == "n/a" for r in records):
            notes.append(f"{result_files()[key]}: not part of this study (no model of the config's sweeps produces it)")
        for reason, names in by_reason.items():
            what = f"{result_files()[key]} {reason}"
            if reason == "missing":
                what += f" (written by `{writer(key)}`; the stage has not run)"
            notes.append(f"{what}: {', '.join(names)}")
    return notes


def status_rows(records):
    files = result_files()
    return [{"model": r.name, "task": r.task, **{files[k]: r.status[k] for k in files}} for r in records]


# ---- fields shared by decode.json and vllm.json

def output_check(r, key):
    """Whether the speed figures of r's decode.json / vllm.json may be scored: "ok" when its top-level "quality"
    (mtp.measure.output_quality) kept enough prompts (those whose continuation is degenerate were left out of its
    speed figures); else why not: "no data: degenerate output (reason)", or that the file carries no quality check
    at all (written before mtp.measure), or none that dropped prompts (its figures count degenerate
    continuations); None without the file."""
    d = r.results[key]
    if d is None:
        return None
    q = d.quality
    if q is None or not isinstance(q.degenerate, bool):
        return f"no data: {result_files()[key]} has no output-quality check (rerun `{writer(key)}`)"
    if not isinstance(q.kept, list):
        return (f"no data: {result_files()[key]} counts degenerate continuations in its speed figures (written "
                f"before they were dropped; rerun `{writer(key)}`)")
    if q.degenerate:
        reason = str(q.reason or "no reason recorded")
        return f"{DEGENERATE} ({reason.removeprefix('degenerate output: ')})"
    return "ok"


def speedup_spread(b):
    """A per-batch row's speed-up spread (mtp.result_types.Spread: mtp.measure.ratio) as a dict of min, max,
    spread, unstable; None without one."""
    x = b.speedup_spread if b is not None else None
    if x is None or num(x.spread) is None:
        return None
    return {"min": num(x.min), "max": num(x.max), "spread": x.spread, "unstable": bool(x.unstable)}


# ---- accessors on numbers and records

def num(x):
    """x if it is a finite number (not a bool), else None."""
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def safe_ratio(a, b):
    """a / b when both are finite numbers and b is not 0, else None."""
    a, b = num(a), num(b)
    return a / b if a is not None and b else None


def order(r):
    """Sort key of records: dataset, then size by parameters, then n."""
    return (r.dataset, r.params, r.slot, r.n_heads)


def baseline(records, r):
    """The n=1 model of r's dataset, slot (size, head type, seed), else the n=1 transformer model of its dataset,
    preset and seed (every head type's n=1 model but linear is that same architecture), or None."""
    same = [b for b in records if (b.dataset, b.slot, b.n_heads) == (r.dataset, r.slot, 1)]
    plain = [b for b in records if (b.dataset, b.size, b.head_type, b.seed, b.n_heads) ==
             (r.dataset, r.size, head_types.PAPER, r.seed, 1)]
    return (same or plain or [None])[0]


def pairs(records):
    """[(r, baseline)]: every n>1 model with an n=1 model of the same dataset, size and training seed."""
    return [(r, b) for r in records if r.n_heads > 1 for b in [baseline(records, r)] if b is not None]


def seed_groups(model_pairs):
    """{'<dataset>/<family>-n<n>': [(r, baseline), one per training seed]} of pairs(...): the comparisons that
    differ only by their training seed, judged together (mtp.paired.seed_interval)."""
    out = {}
    for r, b in model_pairs:
        out.setdefault(f"{r.dataset}/{r.family}-n{r.n_heads}", []).append((r, b))
    return out
