"""eval_code.json (EvalCode) and eval_<task>.json (TaskEval, or a task's subclass of it)."""
from dataclasses import dataclass, field
from typing import Optional

from mtp.result_types.base import ResultFile, Typed


# ---- eval_code.json (mtp eval code: mtp.evals.code)

@dataclass
class Sample(Typed):
    completion: Optional[str] = None
    result: Optional[str] = None
    status: Optional[str] = None


@dataclass
class Problem(Typed):
    """One problem: n samples, `correct` of them passing (the pass@k estimator's inputs)."""
    task_id: Optional[str] = None
    n: Optional[int] = None
    correct: Optional[int] = None
    samples: list[Sample] = field(default_factory=list)


@dataclass
class BenchmarkScore(Typed):
    """One code benchmark: pass@k ({"pass@1": ...}), the problems, and whether speculative decoding gave the
    greedy completions (lossless: identical, mismatched, draft_tokens)."""
    benchmark: Optional[str] = None
    num_problems: Optional[int] = None
    num_problems_total: Optional[int] = None
    pass_at_k: dict = field(default_factory=dict)
    skipped: Optional[dict] = None
    problems: list[Problem] = field(default_factory=list)
    lossless: Optional[dict] = None

    def pass_at(self, k):
        """pass@k over the problems, or None where it was not computed."""
        return self.pass_at_k.get(f"pass@{k}")

    @property
    def speculative_identical(self):
        """Whether speculative greedy gave greedy's completions on every problem; None when not checked."""
        return (self.lossless or {}).get("identical")


@dataclass
class EvalCode(ResultFile):
    model: Optional[dict] = None
    config: Optional[dict] = None
    benchmarks: dict[str, BenchmarkScore] = field(default_factory=dict)
    metrics: Optional[dict] = None


# ---- eval_<task>.json (mtp eval <task>: mtp.evals.<task>; a task names its class in mtp.tasks)

@dataclass
class TaskEval(ResultFile):
    """What every synthetic task's evaluation writes; "metrics" holds the task's headline metric."""
    dataset: Optional[str] = None
    size: Optional[str] = None
    head_type: Optional[str] = None
    n: Optional[int] = None
    seed: Optional[int] = None  # the training seed (files written before training seeds: the test set's)
    task: Optional[str] = None
    num_tests: Optional[int] = None
    test_seed: Optional[int] = None
    metrics: Optional[dict] = None

    def metric(self, name):
        """A value of "metrics" (the task's headline metric and others), or None."""
        return (self.metrics or {}).get(name)

    @property
    def items_seed(self):
        """The seed of the test set ("seed" in files written before training seeds)."""
        return self.test_seed if self.test_seed is not None else self.seed


@dataclass
class PolynomialEval(TaskEval):
    """accuracy_by_m / correct_by_m: per number of operations m (a string key), accuracy and 0/1 per test item."""
    max_ops_train: Optional[int] = None
    accuracy_by_m: dict = field(default_factory=dict)
    correct_by_m: dict = field(default_factory=dict)

    def correct_at(self, m):
        """0/1 per test item at m operations, or None."""
        return self.correct_by_m.get(str(m))


@dataclass
class InductionEval(TaskEval):
    """correct_by_story: per test story, 0/1 per scored token."""
    context: Optional[int] = None
    correct_by_story: list = field(default_factory=list)
