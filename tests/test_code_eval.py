"""HumanEval / MBPP: data, prompts, stops, programs, scoring in the real sandbox, the CLI, the eval stage (mtp.stages.eval.evaluate)."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from mtp import UserError
from mtp.cli import main
from mtp.evals import code
from mtp.evals.sandbox import Limits
from mtp.stages.eval import evaluate

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (apt-get install bubblewrap)")
# generous: reference solutions such as MBPP 123 need ~3 s of CPU, more on a loaded machine
REFERENCE = Limits(timeout_s=20.0)


# ---- data, prompts, stops ---------------------------------------------------------------------------

def test_truncate_at_the_earliest_stop():
    text = "    return x\n\nprint(f(1))\ndef g():\n"
    assert code.truncate(text, code.HUMANEVAL_STOPS) == "    return x\n"
    assert code.truncate("    return 1", code.HUMANEVAL_STOPS) == "    return 1"
    assert code.truncate("def f():\n    return 1\n[DONE]\nYou are", code.MBPP_STOPS) == "def f():\n    return 1\n"
    assert code.truncate("    x = 1\n# comment\n", code.HUMANEVAL_STOPS) == "    x = 1"


def test_humaneval_problems():
    problems = code.benchmark_problems("humaneval")
    assert len(problems) == 164 and problems[0]["task_id"] == "HumanEval/0"
    assert all(p["prompt"].rstrip().endswith(('"""', "'''")) for p in problems[:10])


def test_mbpp_test_split_and_three_shot_prompt():
    problems = code.benchmark_problems("mbpp")
    assert [p["task_id"] for p in problems] == list(range(11, 511))
    p = problems[0]
    prompt = p["prompt"]
    assert prompt.count("You are an expert Python programmer, and here is your task:") == 4
    assert prompt.count("[BEGIN]") == 4 and prompt.count("[DONE]") == 3 and prompt.endswith("[BEGIN]\n")
    assert "similar_elements" in prompt and "is_not_prime" in prompt and "heap_queue_largest" in prompt  # ids 2, 3, 4
    assert prompt.rstrip().endswith(p["test_list"][-1] + "\n[BEGIN]")
    assert p["text"] in prompt and p["code"] not in prompt


def test_programs():
    he = code.benchmark_problems("humaneval")[0]
    prog = code.program("humaneval", he, "    return 1\n")
    assert prog.startswith(he["prompt"] + "    return 1\n") and prog.rstrip().endswith(f"check({he['entry_point']})")
    mb = {"task_id": 367, "code": "", "test_setup_code": "root = Node(1)", "test_list": ["assert f(root)"]}
    prog = code.program("mbpp", mb, "class Node: ...")
    assert prog.index("class Node") < prog.index("root =") < prog.index("assert f(root)")
    with pytest.raises(UserError, match="completion must be text"):
        code.program("mbpp", mb, 42)


def test_mbpp_path_errors(tmp_path):
    with pytest.raises(UserError, match=str(tmp_path / "nowhere" / "mbpp.jsonl")):
        code.load_mbpp(tmp_path / "nowhere")
    bad = tmp_path / "mbpp.jsonl"
    bad.write_text('{"task_id": 1, "text": "t", "code": "c", "test_list": []}\n{not json\n')
    with pytest.raises(UserError, match=rf"{bad}:2: not valid JSON"):
        code.load_mbpp(tmp_path)
    bad.write_text('{"task_id": 1, "text": "t", "code": 3, "test_list": []}\n')
    with pytest.raises(UserError, match=rf"{bad}:1: field 'code' must be str, got int"):
        code.load_mbpp(bad)
    bad.write_text('{"task_id": 1, "text": "t", "code": "c", "test_list": []}\n')
    with pytest.raises(UserError, match="not the full MBPP"):
        code.load_mbpp(bad)


def test_mbpp_offline_and_missing_names_the_path(tmp_path):
    """The default folder missing and no network: one UserError naming the folder (a fresh process: offline env)."""
    script = ("from pathlib import Path\nfrom mtp import UserError\nfrom mtp.evals import code\n"
              f"code.default_mbpp_dir = lambda: Path({str(tmp_path / 'absent')!r})\n"
              "try:\n    code.load_mbpp()\nexcept UserError as e:\n    print('USERERROR', e)\n")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("USERERROR") and str(tmp_path / "absent" / "mbpp.jsonl") in out.stdout
    assert "google-research-datasets/mbpp" in out.stdout


def test_humaneval_malformed_file(tmp_path):
    bad = tmp_path / "he.jsonl"
    bad.write_text('{"task_id": "X/0", "prompt": "def f():\\n", "test": "", "entry_point": ["f"]}\n')
    with pytest.raises(UserError, match=rf"{bad}:1: field 'entry_point' must be str, got list"):
        code.load_humaneval(bad)


# ---- scoring in the sandbox: reference solutions pass, empty completions do not -----------------------

@needs_bwrap
def test_humaneval_canonical_solutions_pass_and_empty_ones_fail():
    problems = code.benchmark_problems("humaneval")
    completions = {p["task_id"]: [p["canonical_solution"], ""] for p in problems}
    res = code.score_completions("humaneval", problems, completions, [1, 2], limits=REFERENCE, workers=2)
    failed = [(r["task_id"], r["samples"][0]["result"]) for r in res["problems"] if r["samples"][0]["status"] != "passed"]
    assert failed == []  # 164/164 canonical solutions
    assert sum(r["samples"][1]["status"] == "passed" for r in res["problems"]) == 0  # empty completions
    assert res["pass_at_k"] == {"pass@1": pytest.approx(0.5), "pass@2": pytest.approx(1.0)}


@needs_bwrap
def test_mbpp_reference_solutions_pass_and_empty_ones_fail():
    problems = code.benchmark_problems("mbpp")
    completions = {p["task_id"]: [p["code"], ""] for p in problems}
    res = code.score_completions("mbpp", problems, completions, [1], limits=REFERENCE, workers=2)
    passed = [r["task_id"] for r in res["problems"] if r["samples"][0]["status"] == "passed"]
    assert len(passed) >= 495, [(r["task_id"], r["samples"][0]["result"]) for r in res["problems"] if r["task_id"] not in passed]
    assert sum(r["samples"][1]["status"] == "passed" for r in res["problems"]) == 0
    assert res["num_problems"] == 500
    assert res["pass_at_k"]["pass@1"] == pytest.approx(len(passed) / 1000)


# ---- the CLI on external samples ---------------------------------------------------------------------

def _write_samples(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@needs_bwrap
def test_cli_scores_a_samples_file(tmp_path, capsys):
    problems = code.benchmark_problems("humaneval")[:3]
    rows = []
    for p in problems:
        rows += [{"task_id": p["task_id"], "completion": p["canonical_solution"], "extra": 1},
                 {"task_id": p["task_id"], "completion": "    return None\n"}]
    samples = _write_samples(tmp_path / "samples.jsonl", rows)
    assert main(["eval", "code", "--benchmark", "humaneval", "--samples", str(samples), "--k", "1,2",
                 "--timeout", "10"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == {"pass@1": 0.5, "pass@2": 1.0}
    results = [json.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in results] == [True, False] * 3
    assert results[0]["extra"] == 1 and results[0]["result"] == "passed"
    assert results[1]["result"].startswith("failed")


@needs_bwrap
def test_cli_mbpp_task_ids_as_text(tmp_path, capsys):
    ref = code.load_mbpp()[11]["code"]
    samples = _write_samples(tmp_path / "s.jsonl", [{"task_id": "Mbpp/11", "completion": ref},
                                                   {"task_id": 11, "completion": "def nothing(): pass"}])
    assert main(["eval", "code", "--benchmark", "mbpp", "--samples", str(samples), "--k", "1"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"pass@1": 0.5}


@pytest.mark.parametrize("rows, k, message", [
    (['{"task_id": "HumanEval/0", "completion": "x"}', "{oops"], None, r"s.jsonl:2: not valid JSON"),
    ([{"task_id": "HumanEval/0", "completion": 3}], None, r"s.jsonl:1: field 'completion' must be text, got int"),
    ([{"task_id": "HumanEval/0"}], None, r"s.jsonl:1: field 'completion' must be text, got missing"),
    ([{"completion": "x"}], None, r"s.jsonl:1: field 'task_id' is missing"),
    ([{"task_id": "HumanEval/999", "completion": "x"}], None, r"s.jsonl:1: field 'task_id': 'HumanEval/999'"),
    ([{"task_id": "HumanEval/0", "completion": "x"}], "1,10", r"--k 10: needs at least 10 samples"),
    ([{"task_id": "HumanEval/0", "completion": "x"}], "0", r"--k: every k must be an integer >= 1"),
])
def test_cli_bad_samples_are_one_line_user_errors(tmp_path, capsys, rows, k, message):
    samples = _write_samples(tmp_path / "s.jsonl", rows)
    argv = ["eval", "code", "--benchmark", "humaneval", "--samples", str(samples)] + (["--k", k] if k else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_cli_missing_samples_file(tmp_path, capsys):
    assert main(["eval", "code", "--benchmark", "mbpp", "--samples", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl: file not found" in capsys.readouterr().err


def test_cli_model_mode_needs_model_args(capsys):
    assert main(["eval", "code"]) == 2
    err = capsys.readouterr().err
    assert "--model PATH, or --dataset, --size and --n-heads" in err and "--benchmark and --samples" in err


# ---- a model of the study, end to end ------------------------------------------------------------------

def _study(tmp_path):
    import torch

    from mtp import config
    from mtp.checkpoint import save_model
    from mtp.nn.model import ModelConfig, MTPModel
    from mtp.tokenizer import Tokenizer, byte_tokenizer
    data = tmp_path / "data"
    data.mkdir()
    Tokenizer(byte_tokenizer()).save(data / "tokenizer.json")
    cfg = config.validate({
        "results": str(tmp_path / "results"),
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "test"},
        "datasets": {"code": {"source": {"kind": "stdlib"}}},
        "sweeps": [{"dataset": "code", "sizes": ["debug"], "n_heads": [2]}],
        "train": {"seq_len": 64},
        "eval": {"code": {"max_problems": 2, "samples": 2, "temperature": 0.8, "k": [1, 2, 5],
                          "max_new_tokens": 24, "batch_size": 4, "timeout_s": 5.0}},
    })
    entry = config.models(cfg)[0]
    torch.manual_seed(0)
    model = MTPModel(ModelConfig.from_preset("debug", vocab_size=257, n_heads=2))
    save_model(entry.dir, model, extra={"dataset": "code", "size": "debug", "n": 2, "data_dir": str(data)})
    return cfg, entry


@needs_bwrap
def test_evaluate_model_end_to_end(tmp_path, capsys):
    from mtp import tracking
    from mtp.io import read_json
    cfg, entry = _study(tmp_path)
    result = evaluate(cfg, entry, "code")
    saved = read_json(f"{entry.dir}/eval_code.json")
    assert saved == json.loads(json.dumps(result))
    assert set(saved["benchmarks"]) == {"humaneval", "mbpp"}
    for bench, stops in (("humaneval", code.HUMANEVAL_STOPS), ("mbpp", code.MBPP_STOPS)):
        res = saved["benchmarks"][bench]
        assert res["num_problems"] == 2 and all(r["n"] == 2 for r in res["problems"])
        assert set(res["pass_at_k"]) == {"pass@1", "pass@2"} and "pass@5" in res["skipped"]
        for r in res["problems"]:
            for s in r["samples"]:
                assert not any(stop in s["completion"] for stop in stops)
                assert s["status"] in ("passed", "failed", "timeout")
    assert set(saved["metrics"]) == {"humaneval_pass_at_1", "humaneval_pass_at_2", "mbpp_pass_at_1", "mbpp_pass_at_2"}
    assert "pass@5 skipped" in capsys.readouterr().err
    assert tracking.find_run(cfg, "eval_code", dataset="code", size="debug", n=2, seed=0) is not None


@needs_bwrap
@pytest.mark.parametrize("stand_in", ["reference", "wrong"])
def test_evaluate_model_scores_a_model_of_known_accuracy(tmp_path, monkeypatch, stand_in):
    """evaluate_model with mtp.decoding.engine.generate replaced by a stand-in that, given a problem's prompt, writes
    the benchmark's reference solution (HumanEval canonical_solution, MBPP code) or a wrong one; through
    the same prompts, stops, programs, sandbox, pass@k, file and MLflow run: pass@k exactly 1, or exactly 0."""
    import mtp.decoding.engine
    from mtp.io import read_json
    from mtp.tokenizer import Tokenizer, byte_tokenizer
    cfg, entry = _study(tmp_path)
    cfg["eval"]["code"]["max_new_tokens"] = 1024  # room for a whole reference solution
    cfg["eval"]["code"]["timeout_s"] = REFERENCE.timeout_s
    tok = Tokenizer(byte_tokenizer())
    solutions = {}
    for bench in ("humaneval", "mbpp"):
        for p in code.benchmark_problems(bench)[:2]:
            body = p["canonical_solution"] if bench == "humaneval" else p["code"].replace("\r\n", "\n")
            wrong = "    return None\n" if bench == "humaneval" else "def nothing():\n    return None\n"
            solutions[p["prompt"]] = body if stand_in == "reference" else wrong
    calls = []

    def generate(model, prompts, max_new_tokens, eod_id, temperature=0.0, seed=0, batch_size=8):
        assert max_new_tokens == 1024 and eod_id == tok.eod_id
        calls.append(len(prompts))
        out = []
        for ids in prompts:  # the prompt's end, as the model sees it
            text = tok.decode(ids)
            (answer,) = [a for prompt, a in solutions.items() if prompt.endswith(text)]
            out.append(tok.encode(answer + "\n\n\n")[:max_new_tokens])
        return out
    monkeypatch.setattr(mtp.decoding.engine, "generate", generate)
    result = evaluate(cfg, entry, "code")
    assert read_json(f"{entry.dir}/eval_code.json") == json.loads(json.dumps(result))
    assert calls == [2, 2, 2, 2]  # two problems, two sampled runs (temperature 0.8), each benchmark
    expect = 1.0 if stand_in == "reference" else 0.0
    assert result["metrics"] == {f"{b}_pass_at_{k}": expect for b in ("humaneval", "mbpp") for k in (1, 2)}
    for res in result["benchmarks"].values():
        statuses = [s["status"] for r in res["problems"] for s in r["samples"]]
        assert statuses == ["passed" if expect else "failed"] * 4, res["problems"]


@needs_bwrap
def test_greedy_speculative_completions_are_checked_against_greedy(tmp_path, monkeypatch):
    """A greedy n = 2 model: eval_code.json records that the speculative completions equal plain greedy ones
    (decoded again without drafts); a stand-in engine whose speculative output differs is reported by task id.
    A prompt template reaches the model (with {prompt} and MBPP's {tests} filled) and eval.code.stops cut."""
    import mtp.decoding.engine
    cfg, entry = _study(tmp_path)
    cfg["eval"]["code"].update(temperature=0.0, samples=1, k=[1], stops=["#"],
                               prompt_templates={"mbpp": "Q: {text}\n{tests}\nA:\n"})
    result = evaluate(cfg, entry, "code")
    for bench, res in result["benchmarks"].items():
        assert res["lossless"] == {"draft_tokens": 1, "identical": True, "mismatched": []}, bench
        assert all("#" not in s["completion"] for r in res["problems"] for s in r["samples"])
    assert result["metrics"]["humaneval_speculative_identical"] == 1.0
    seen, real = [], mtp.decoding.engine.generate

    def wrong(model, prompts, *a, **kw):  # speculative decoding that loses one token of the first prompt
        seen.extend(prompts)
        out = real(model, prompts, *a, **kw)
        return [o[:-1] if i == 0 else o for i, o in enumerate(out)]
    monkeypatch.setattr(mtp.decoding.engine, "generate", wrong)
    result = evaluate(cfg, entry, "code")
    first = {b: code.benchmark_problems(b)[0]["task_id"] for b in ("humaneval", "mbpp")}
    for bench, res in result["benchmarks"].items():
        assert res["lossless"]["identical"] is False and res["lossless"]["mismatched"] == [first[bench]]
    from mtp.tokenizer import Tokenizer, byte_tokenizer
    p = code.load_mbpp()[11]
    assert Tokenizer(byte_tokenizer()).decode(seen[2]) == f"Q: {p['text']}\n" + "\n".join(p["test_list"]) + "\nA:\n"


def test_prompt_template_errors_name_the_fields():
    p = code.humaneval_problems()[0]
    assert code.render_prompt(p, "x {prompt}") == "x " + p["prompt"]
    with pytest.raises(UserError, match=r"eval.code.prompt_templates: .*KeyError.*fields: \{.*entry_point"):
        code.render_prompt(p, "{nope} {prompt}")
