"""Synthetic tasks (polynomial arithmetic, induction, ...): the registry TASKS, their generators and test sets.

No torch, no model: mtp.data builds training corpora from them, mtp.evals scores models on them. A task is
named by a dataset's `source.kind`; its entry says how to make the training documents, how to score a
model (`mtp eval <name>`, writing <model dir>/eval_<name>.json) and which metric the report's tasks table
shows. Entries name their code as "module:attr" (mtp.registry), so that this stays free of evaluation code.
"""
from dataclasses import dataclass, field
from typing import Callable, Union

from mtp.registry import Registry, resolve

Ref = Union[str, Callable]


@dataclass(frozen=True)
class Task:
    """name: the `source.kind` that generates it and `mtp eval <name>`; documents(seed, **options) -> training
    texts; evaluate(cfg, model entry, run, device) scores one model and returns its result, a dict whose
    "metrics" holds `metric` (the stage `mtp eval <name>` opens the MLflow child run `run`, whose parameters it
    may log, and writes the result to <model dir>/eval_<name>.json); options: the JSON-schema properties of its `source` options; result: the class of
    mtp.result_types its eval_<name>.json is written through and read into (TaskEval or a subclass)."""
    name: str
    documents: Ref
    evaluate: Ref
    metric: str
    options: dict = field(default_factory=dict)
    result: Ref = "mtp.result_types:TaskEval"

    def make_documents(self, seed, options):
        return resolve(self.documents)(seed=seed, **options)

    def run_evaluation(self, cfg, entry, run, device):
        return resolve(self.evaluate)(cfg, entry, run, device)


TASKS = Registry("task", "mtp/tasks/__init__.py")
register = TASKS.register

_COUNT = {"type": "integer", "minimum": 1}
register(Task("polynomial", "mtp.tasks.polynomial:training_documents", "mtp.evals.polynomial:evaluate_model",
              "poly_acc_in_domain", {"num_documents": _COUNT, "max_ops": _COUNT}, "mtp.result_types:PolynomialEval"))  # Section 4.2
register(Task("induction", "mtp.tasks.induction:training_documents", "mtp.evals.induction:evaluate_model",
              "induction_acc", {"num_documents": _COUNT}, "mtp.result_types:InductionEval"))  # Section 4.1
