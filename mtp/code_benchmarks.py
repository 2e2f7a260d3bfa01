"""The registry of code benchmarks (eval.code.benchmarks), torch-free: config validation checks the names.

Each entry names its code as "module:attr" (or passes the function itself):
- `problems(path)` -> the scored problems in order, dicts with 'task_id' and 'prompt' (path: a problem file or
  folder, `eval.code.<name>_path` or `mtp eval code --problems`; None = the default copy);
- `stops`: where a completion is cut;
- `program(problem, completion)` -> the test program run in the sandbox (it passes when it exits 0);
- `task_id(sample's task_id)` -> the problem's task_id (None: as written), for `mtp eval code --samples`.
Scoring, pass@k and the report's code section take any registered benchmark (mtp/evals/code.py).
"""
from dataclasses import dataclass
from typing import Callable, Optional, Union

from mtp.registry import Registry, resolve

Ref = Union[str, Callable]


@dataclass(frozen=True)
class CodeBenchmark:
    name: str
    problems: Ref
    stops: tuple
    program: Ref
    task_id: Optional[Ref] = None

    def load_problems(self, path=None):
        return resolve(self.problems)(path)

    def make_program(self, problem, completion):
        return resolve(self.program)(problem, completion)

    def sample_task_id(self, task_id):
        return resolve(self.task_id)(task_id) if self.task_id else task_id


CODE_BENCHMARKS = Registry("benchmark", "mtp/code_benchmarks.py")
register = CODE_BENCHMARKS.register


def get(name, where="eval.code.benchmarks"):
    return CODE_BENCHMARKS.lookup(name, where)


# HumanEval (Chen et al. 2021) and MBPP (Austin et al. 2021, 3-shot): mtp/evals/code.py
register(CodeBenchmark("humaneval", "mtp.evals.code:humaneval_problems",
                       ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"), "mtp.evals.code:humaneval_program"))
register(CodeBenchmark("mbpp", "mtp.evals.code:mbpp_problems", ("[DONE]", "\nYou are an expert Python programmer"),
                       "mtp.evals.code:mbpp_program", "mtp.evals.code:mbpp_task_id"))
