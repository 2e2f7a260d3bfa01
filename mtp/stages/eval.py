"""`mtp eval`: score a model of the study (code, polynomial, induction) or external code samples.

  mtp eval code --config C --dataset D --size S --n-heads N         # a model of the study
  mtp eval code --benchmark humaneval --samples samples.jsonl [--k 1,10,100]   # human-eval style samples
  mtp eval <task> --config C --dataset D --size S --n-heads N     # a synthetic task: polynomial, induction, ...
"""
import json
import sys
from pathlib import Path

from mtp import UserError
from mtp.args import add_config_arg, add_model_args, model_spec
from mtp.stages.harness import device, model_run, save_result
from mtp.tasks import TASKS

DEFAULT_K = (1, 10, 100)


def add_arguments(p):
    sub = p.add_subparsers(dest="task", metavar="<task>", required=True)
    code = sub.add_parser("code", help="HumanEval / MBPP pass@k, programs run in a bubblewrap sandbox",
                          description="Score a model of the study (--config/--dataset/--size/--n-heads), or "
                          "external samples (--benchmark and --samples, human-eval's samples.jsonl format: "
                          "task_id, completion); the latter writes <samples>_results.jsonl.")
    add_config_arg(code)
    add_model_args(code)
    from mtp.code_benchmarks import CODE_BENCHMARKS
    code.add_argument("--benchmark", choices=list(CODE_BENCHMARKS), help="benchmark of --samples")
    code.add_argument("--samples", metavar="JSONL", help="samples to score: one {task_id, completion} a line")
    code.add_argument("--problems", metavar="PATH", help="problem file (default: human-eval's HumanEval.jsonl.gz; "
                      "MBPP: the copy shipped with mtp, mtp/evals/data/mbpp)")
    code.add_argument("--k", help="comma-separated k of pass@k (default: 1,10,100, those the samples allow)")
    code.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds per program (default: %(default)s)")
    code.add_argument("--workers", type=int, default=2, help="programs run in parallel (default: %(default)s)")
    code.add_argument("--memory-mb", type=int, default=1024, help="address-space limit per program (default: %(default)s)")
    code.add_argument("--unsafe-no-sandbox", action="store_true",
                      help="run generated code WITHOUT bubblewrap (only rlimits); never on untrusted samples")
    for task in TASKS:  # the registered synthetic tasks (mtp/tasks/__init__.py, and the config's extensions)
        s = sub.add_parser(task, help=f"{task} score of a model of the study",
                           description=f"{task} score of a model of the study; writes <model dir>/eval_{task}.json")
        add_config_arg(s)
        add_model_args(s)


def run(args):
    from mtp import config
    if args.task == "code" and args.samples:
        return run_samples(args)
    if args.task == "code" and not (args.model or args.dataset or args.size or args.n_heads):
        raise UserError("name a model of the study (--model PATH, or --dataset, --size and --n-heads), "
                        "or give --benchmark and --samples to score a samples file")
    cfg = config.load(args.config)
    evaluate(cfg, model_spec(cfg, args), args.task)


def evaluate(cfg, entry, task):
    """Score model `entry` on `task` ("code" or a registered synthetic task) in its MLflow child run eval_<task>;
    write the result where the result-kinds table says (<model dir>/eval_<task>.json) -> the result."""
    if task == "code":
        from mtp.evals.code import evaluate_model
        from mtp.evals.sandbox import check_available
        check_available(cfg["eval"]["code"]["unsafe_no_sandbox"])  # before minutes of generation
    else:
        evaluate_model = TASKS[task].run_evaluation
    with model_run(cfg, entry, f"eval_{task}") as run:
        result = evaluate_model(cfg, entry, run, device())
        save_result(run, entry, task, result)
    return result


def _parse_k(text):
    if text is None:
        return None
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--k: expected comma-separated integers like 1,10,100, got '{text}'") from None
    if not ks or min(ks) < 1:
        raise UserError(f"--k: every k must be an integer >= 1, got '{text}'")
    return ks


def read_samples(path, benchmark, problems):
    """[(sample dict, task_id)] from a human-eval samples.jsonl; UserError naming file:line on bad input."""
    from mtp.code_benchmarks import get
    from mtp.evals.code import _read_jsonl
    known = {p["task_id"] for p in problems}
    out = []
    for line, row in _read_jsonl(path):
        if "task_id" not in row:
            raise UserError(f"{path}:{line}: field 'task_id' is missing")
        if not isinstance(row.get("completion"), str):
            got = "missing" if "completion" not in row else type(row["completion"]).__name__
            raise UserError(f"{path}:{line}: field 'completion' must be text, got {got}")
        task_id = get(benchmark, "--benchmark").sample_task_id(row["task_id"])
        if task_id not in known:
            raise UserError(f"{path}:{line}: field 'task_id': {row['task_id']!r} is not a {benchmark} problem "
                            f"scored here{' (MBPP scores the test split, task_ids 11-510)' if benchmark == 'mbpp' else ''}")
        out.append((row, task_id))
    if not out:
        raise UserError(f"{path}: no samples in the file")
    return out


def run_samples(args):
    from mtp.code_benchmarks import CODE_BENCHMARKS
    from mtp.evals import code
    from mtp.evals.sandbox import Limits, check_available
    from mtp.io import write_text

    if not args.benchmark:
        raise UserError(f"--samples needs --benchmark (one of {', '.join(CODE_BENCHMARKS)})")
    ks = _parse_k(args.k)
    check_available(args.unsafe_no_sandbox)
    problems = code.benchmark_problems(args.benchmark, args.problems)
    samples = read_samples(args.samples, args.benchmark, problems)
    completions = {}
    for row, task_id in samples:
        completions.setdefault(task_id, []).append(row["completion"])
    n_min = min(len(c) for c in completions.values())
    if ks and max(ks) > n_min:
        raise UserError(f"--k {max(ks)}: needs at least {max(ks)} samples of every problem, but {args.samples} "
                        f"has only {n_min} for some problem; lower --k")
    res = code.score_completions(args.benchmark, problems, completions, ks or [k for k in DEFAULT_K if k <= n_min],
                                 limits=Limits(timeout_s=args.timeout, memory_mb=args.memory_mb),
                                 workers=args.workers, unsafe_no_sandbox=args.unsafe_no_sandbox,
                                 progress=_progress)
    results = {r["task_id"]: iter(r["samples"]) for r in res["problems"]}
    lines = []
    for row, task_id in samples:
        s = next(results[task_id])
        lines.append(json.dumps({**row, "result": s["result"], "passed": s["status"] == "passed"}))
    out = Path(f"{args.samples}_results.jsonl")
    write_text(out, "\n".join(lines) + "\n")
    if res["num_problems"] < res["num_problems_total"]:
        print(f"note: {res['num_problems']} of {res['num_problems_total']} {args.benchmark} problems have samples",
              file=sys.stderr)
    print(f"wrote {out}")
    print(json.dumps(res["pass_at_k"]))


def _progress(done, total):
    if sys.stderr.isatty() and (done == total or done % 20 == 0):
        print(f"\r{done}/{total} programs", end="\n" if done == total else "", file=sys.stderr, flush=True)
