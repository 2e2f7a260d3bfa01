"""The result kinds: every per-model result file of the study, named once. Each kind has its file name (under the
model's directory), the stage that writes it, when the study expects it for a model, and its class in
mtp.result_types (the stage writes through it, the report reads into it). The rules (their outputs,
`report_inputs`), the stages (where they write) and the report (what it reads, why a file is absent) read this table;
no other module spells a result file's name. torch-free (the Snakefile reads it at parse time).

    key          file                 writer           expected for
    metrics      metrics.json         mtp train        every model
    decode       decode.json          mtp decode       every model (decode.enabled)
    vllm         vllm.json            mtp vllm         code models with n > 1 of a head type that exports (vllm.enabled)
    code         eval_code.json       mtp eval code    code models (eval.code.enabled)
    <task>       eval_<task>.json     mtp eval <task>  models of that synthetic task (eval.synthetic.enabled)
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mtp import head_types
from mtp.registry import resolve
from mtp.result_types import Decode, EvalCode, Metrics, Vllm
from mtp.tasks import TASKS

BENCH_TRAIN = "bench/train.json"  # the study's train benchmark (rule bench_training), under the results folder


@dataclass(frozen=True)
class ResultKind:
    key: str
    file: str
    writer: str
    why_absent: Callable  # (cfg, task, n, head_type) -> None when the study writes it for such a model, else why not
    type: type  # its class in mtp.result_types (written through and read into)


def _enabled(section, *path):
    def why_absent(cfg, task, n, head_type):
        node = cfg
        for p in (section, *path):
            node = node[p]
        return None if node["enabled"] else f"disabled ({'.'.join((section, *path))}.enabled: false)"
    return why_absent


def _code_only(rest):
    return lambda cfg, task, n, head_type: "n/a" if task != "code" else rest(cfg, task, n, head_type)


def _served(cfg, task, n, head_type):
    """time_vllm serves code models with heads to draft with, of a head type that exports (head_types: export)."""
    if task != "code" or n == 1 or head_types.get(head_type).export:
        return "n/a"
    return _enabled("vllm")(cfg, task, n, head_type)


def _task(name):
    def why_absent(cfg, task, n, head_type):
        return "n/a" if task != name else _enabled("eval", "synthetic")(cfg, task, n, head_type)
    return why_absent


_STAGES = [ResultKind("metrics", "metrics.json", "mtp train", lambda cfg, task, n, head_type: None, Metrics),
           ResultKind("decode", "decode.json", "mtp decode", _enabled("decode"), Decode),
           ResultKind("vllm", "vllm.json", "mtp vllm", _served, Vllm),
           ResultKind("code", "eval_code.json", "mtp eval code", _code_only(_enabled("eval", "code")), EvalCode)]


def task_file(task):
    """The result file of a synthetic task's evaluation (the rule score_synthetic passes "{task}", its wildcard)."""
    return f"eval_{task}.json"


def kinds():
    """{key: ResultKind}: the stages' and one per registered task (mtp.tasks; extensions may add tasks)."""
    return {**{k.key: k for k in _STAGES},
            **{t: ResultKind(t, task_file(t), f"mtp eval {t}", _task(t), resolve(TASKS[t].result)) for t in TASKS}}


def file(key):
    """The file name of result `key`."""
    return kinds()[key].file


def checked(key, data):
    """What a stage writes as result `key`: `data` checked against the kind's class and stamped with its schema
    version (mtp.result_types.ResultFile.check)."""
    return kinds()[key].type.check(data)


def read(key, data):
    """A result file's JSON object -> an instance of the kind's class; mtp.result_types.SchemaError for a file of a
    newer schema."""
    return kinds()[key].type.read(data)


def path(m, key):
    """Where model m (a mtp.spec.ModelSpec) keeps result `key`."""
    return Path(m.dir) / file(key)


def expected(cfg, task, key, n=None, head_type=head_types.PAPER):
    """None when the config makes the study write result `key` for a model of `task` with n heads of `head_type`,
    else why not ("n/a", or "disabled (...)")."""
    return kinds()[key].why_absent(cfg, task, n, head_type)


def expected_paths(cfg, models):
    """Every result file the config makes the study write for `models` (the report's inputs)."""
    from mtp.config import task_of
    return [path(m, key) for m in models for key in kinds()
            if expected(cfg, task_of(cfg["datasets"][m.dataset]), key, m.n_heads, m.head_type) is None]
