"""The report: verdict rules in both directions, a full synthetic study, a partial one, the rule's outputs.

Result files are fake but in the real writers' formats: decode.json comes from mtp.decoding.engine.bench on
tiny random models (numbers then set), polynomial metrics from mtp.evals.polynomial.summary, pass@k
from mtp.evals.passk; metrics.json, eval_code.json and eval_induction.json mirror train.py, code.py
and induction.py key for key; vllm.json from mtp.stages.vllm.summarize and flat_metrics.
"""
import copy
import functools
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from mtp import config, measure, paired, report
from mtp.io import write_json

from conftest import ROOT
from test_cost_claims import train_bench, typed_bench

R, N, C, D = report.REPRODUCED, report.NOT_AT_SCALE, report.CONTRADICTED, report.NO_DATA
VOCAB = 512
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- the rules, both directions

# The memory and overhead rules, per vocabulary: tests/test_cost_claims.py


def counted(*tpfs, prompts=12):
    """{k: [(tokens, forwards) per prompt]} at k = 1, 2, ..: pooled tokens per forward tpfs[k-1], each prompt off by
    -1, 0 or +1 token in a pattern that shifts with k (so k and k+1 differ from prompt to prompt)."""
    return {k: per_prompt(t, prompts=prompts, shift=k) for k, t in enumerate(tpfs, 1)}


def test_tokens_per_forward_rule_gives_each_verdict():
    """Per model, each step k -> k+1 is judged by its paired-bootstrap interval over prompts: every step above 0
    reproduces, one below contradicts, one around 0 leaves it open; no drafts accepted: not at this scale."""
    rule = report.verdict_tokens_per_forward_grow
    grow = {"native a/m-n4": counted(1.6, 2.0, 2.3), "vllm a/m-n4": counted(1.6, 2.0, 2.3),
            "native b/m-n3": counted(1.3, 1.5)}
    assert rule(grow) == R
    assert rule({**grow, "native c/m-n4": counted(1.6, 2.0, 1.7)}) == C  # one step down in one model
    assert rule({**grow, "native c/m-n4": counted(1.6, 2.0, 2.0)}).startswith(  # k=2 and 3 within prompt noise
        f"{report.INCONCLUSIVE} (native c/m-n4 k=2->3: 95% CI [")
    assert rule({"native a/m-n4": counted(1.0, 1.02, 1.05)}) == N  # rising, but drafts (almost) never accepted
    assert rule({"native a/m-n2": counted(1.9)}) == D  # one k per model: nothing to compare
    assert rule({"native a/m-n4": {1: [], 2: []}}) == D and rule({}) == D
    # the interval, not the pooled figures, decides: a pooled rise carried by one prompt of twelve is inconclusive
    one = {1: [(20, 20)] * 12, 2: [(20, 20)] * 11 + [(40, 20)]}
    from mtp.report.speculative import tpf_steps
    assert tpf_steps({"x": one})["x"]["points"][1][1] > 1.05
    assert rule({"x": one}).startswith(report.INCONCLUSIVE)


def test_byte_level_rule():
    assert report.verdict_byte_level_gain_largest(3.0, 1.8) == R
    assert report.verdict_byte_level_gain_largest(1.5, 1.8) == C
    assert report.verdict_byte_level_gain_largest(0.7, 0.9) == N
    assert report.verdict_byte_level_gain_largest(None, 1.8) == D
    stable, unstable = {"spread": 0.1, "unstable": False}, {"spread": 0.4, "unstable": True}
    assert report.verdict_byte_level_gain_largest(3.0, 1.8, [stable, stable]) == R
    unsure = report.verdict_byte_level_gain_largest(3.0, 1.8, [stable, unstable])
    assert unsure == "no verdict: unstable timing (spread 40%)"
    assert report.verdict_byte_level_gain_largest(3.0, 1.8, [stable, None]).startswith("no verdict")


def ci(lo, hi, seeds=3):
    return {"diff": (lo + hi) / 2, "lo": lo, "hi": hi, "items": 100, "resamples": 2000, "level": 0.95,
            "seeds": seeds, "per_seed": [(lo + hi) / 2] * seeds}


def test_paired_rule():
    assert report.verdict_paired([ci(0.05, 0.2), ci(0.01, 0.1), ci(-0.02, 0.1)]) == R
    assert report.verdict_paired([ci(-0.2, -0.05), ci(-0.1, -0.01), ci(-0.1, 0.02)]) == C
    assert report.verdict_paired([ci(-0.02, 0.1)]) == "inconclusive (95% CI [-0.020, +0.100] includes 0)"
    assert report.verdict_paired([ci(0.05, 0.2), ci(-0.2, -0.05)]).startswith("inconclusive")  # both ways
    assert report.verdict_paired([ci(0.05, 0.2), ci(-0.2, 0.1), ci(-0.1, 0.1)]).startswith("inconclusive")
    assert report.verdict_paired([None]) == D
    # fewer than 3 training seeds: exploratory, whatever the interval says
    one = report.verdict_paired([ci(0.05, 0.2, seeds=1)])
    assert one == "one seed: exploratory (needs 3 training seeds per model; the interval lies above 0)"
    assert report.verdict_paired([ci(-0.2, -0.05, seeds=3), ci(-0.2, -0.05, seeds=2)]).startswith(
        "2 seeds: exploratory (") and one.endswith("above 0)")
    assert report.verdict_every_m({1: [ci(0.1, 0.3, seeds=1)]}).startswith("one seed: exploratory")


def test_seed_interval_holds_training_run_noise():
    """Over seeds, the interval is Student's t over the seeds' differences: two seeds with a large gain and one
    with a loss include 0, although each seed's items are decisive; three equal gains exclude it (the items'
    variance keeps the interval from collapsing); three gains of unequal size, one near 0 (run D of the default
    study), include it -- a bootstrap over the three seeds excluded 0 there; one seed is the paired bootstrap."""
    gain, loss = ([1] * 80 + [0] * 20, [1] * 20 + [0] * 80), ([1] * 20 + [0] * 80, [1] * 60 + [0] * 40)
    mixed = paired.seed_interval([gain, gain, loss])
    assert mixed["seeds"] == 3 and mixed["per_seed"] == pytest.approx([0.6, 0.6, -0.4])
    assert mixed["lo"] < 0 < mixed["hi"] and mixed["diff"] == pytest.approx(0.8 / 3)
    assert all(paired.sign(paired.paired_bootstrap(*g)) != 0 for g in (gain, loss))  # each seed alone: decisive
    assert report.verdict_paired([mixed]).startswith("inconclusive")
    same = paired.seed_interval([gain] * 3)
    assert report.verdict_paired([same]) == R and same["lo"] < 0.6 < same["hi"]
    assert report.verdict_paired([paired.seed_interval([loss] * 3)]) == C

    def seed(a_hits, b_hits, items=200):
        return [1] * a_hits + [0] * (items - a_hits), [1] * b_hits + [0] * (items - b_hits)
    agree = paired.seed_interval([seed(108, 104), seed(177, 100), seed(106, 36)])  # +0.02, +0.385, +0.35
    assert all(d > 0 for d in agree["per_seed"]) and report.verdict_paired([agree]).startswith("inconclusive")
    single = paired.seed_interval([gain])
    assert {k: single[k] for k in ("diff", "lo", "hi")} == {k: paired.paired_bootstrap(*gain)[k] for k in ("diff", "lo", "hi")}
    assert report.verdict_paired([single]).startswith("one seed: exploratory")
    with pytest.raises(ValueError, match="95%"):
        paired.seed_interval([gain] * 3, level=0.9)


def test_every_m_rule():
    assert report.verdict_every_m({1: [ci(0.1, 0.3), ci(0.05, 0.1)], 2: [ci(0.01, 0.1)], 6: [ci(0.01, 0.03)]}) == R
    v = report.verdict_every_m({1: [ci(0.1, 0.3)], 2: [ci(-0.05, 0.1)], 6: [ci(0.01, 0.03)]})
    assert v == "inconclusive (m=2: 95% CI [-0.050, +0.100] includes 0)"  # not at every m
    assert report.verdict_every_m({1: [ci(-0.3, -0.1)], 2: [ci(-0.2, -0.1)], 6: [ci(-0.1, 0.1)]}) == C
    assert report.verdict_every_m({}) == D
    assert report.verdict_every_m({1: [None]}) == D


def test_vllm_json_is_expected_only_from_models_with_heads_to_draft():
    """The rule time_vllm serves n > 1 code models only: an n = 1 model's vllm.json is n/a, not 'missing'."""
    cfg = config.load(ROOT / ".test" / "config.yaml")
    assert report.expected(cfg, "code", "vllm", 1) == "n/a"
    assert report.expected(cfg, "code", "vllm", 2) is None
    assert report.expected(cfg, "induction", "vllm", 2) == "n/a"


def test_paired_bootstrap_interval_excludes_or_includes_zero():
    better = [1] * 60 + [0] * 40  # model A: 60 of 100 items right
    worse = [1] * 40 + [0] * 60  # model B: 40 of the same items, a subset of A's
    up = paired.paired_bootstrap(better, worse)
    assert up["diff"] == pytest.approx(0.2) and 0 < up["lo"] < 0.2 < up["hi"] and up["items"] == 100
    assert paired.sign(up) == 1 and report.verdict_paired([up], min_seeds=1) == R
    down = paired.paired_bootstrap(worse, better)
    assert paired.sign(down) == -1 and report.verdict_paired([down], min_seeds=1) == C
    close = paired.paired_bootstrap([1] * 41 + [0] * 59, worse)  # one item apart
    assert close["lo"] <= 0 <= close["hi"] and paired.sign(close) == 0
    verdict = report.verdict_paired([close], min_seeds=1)
    assert verdict.startswith("inconclusive (95% CI [") and verdict.endswith("includes 0)")
    assert paired.paired_bootstrap(better, worse) == up  # seeded
    # items holding several scored positions: pooled rate, resampled per item
    stories = paired.paired_bootstrap([(3, 3)] * 30, [(1, 3)] * 30)
    assert stories["diff"] == pytest.approx(2 / 3) and stories["lo"] == pytest.approx(2 / 3)
    assert paired.paired_bootstrap([], []) is None
    with pytest.raises(ValueError):
        paired.paired_bootstrap([1], [1, 0])


def test_lossless_rule():
    assert report.verdict_lossless([True, True]) == R
    assert report.verdict_lossless([True, False]) == C
    assert report.verdict_lossless([None]) == D


def test_every_rule_states_its_rule():
    for name in dir(report):
        if name.startswith("verdict_"):
            doc = getattr(report, name).__doc__
            assert doc and "Reproduced" in doc and "no data" in doc, name


# ---------------------------------------------------------------- a synthetic study in the writers' formats

SEEDS = [0, 1, 2]  # paired claims need 3 training seeds per model


def study_cfg(tmp_path, extra_sweeps=(), **enabled):
    raw = {"results": str(tmp_path / "results"), "seed": 0,
           "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "mtp-test-report"},
           "model_presets": {"micro": {"dim": 32, "n_layers": 5, "n_attn_heads": 2},
                             "mini": {"dim": 64, "n_layers": 5, "n_attn_heads": 2},
                             "deep": {"dim": 32, "n_layers": 10, "n_attn_heads": 2}},
           "datasets": {"code": {"source": {"kind": "stdlib"}, "tokenizer": {"kind": "bpe", "vocab_size": VOCAB}},
                        "code-bytes": {"source": {"kind": "stdlib"}, "tokenizer": {"kind": "byte"}},
                        "poly": {"source": {"kind": "polynomial"}, "tokenizer": {"kind": "byte"}},
                        "ind": {"source": {"kind": "induction"}, "tokenizer": {"kind": "byte"}}},
           "sweeps": [{"dataset": "code", "sizes": ["micro", "mini"], "n_heads": [1, 2, 4], "seeds": SEEDS},
                      {"dataset": "code-bytes", "sizes": ["deep"], "n_heads": [1, 8], "seeds": SEEDS},
                      {"dataset": "poly", "sizes": ["micro"], "n_heads": [1, 2], "seeds": SEEDS},
                      {"dataset": "ind", "sizes": ["micro"], "n_heads": [1, 2], "seeds": SEEDS}, *extra_sweeps],
           "train": {"seq_len": 64, "batch_size": 8, "max_steps": 30, "eval_every": 15},
           "decode": {"enabled": enabled.get("decode", True), "batch_sizes": [1, 2]},
           "vllm": {"enabled": enabled.get("vllm", True)},
           "eval": {"code": {"enabled": enabled.get("code", True), "k": [1]},
                    "synthetic": {"enabled": enabled.get("synthetic", True)}}}
    return config.validate(raw)


def fake_metrics(m, bpb, mem_mb, step_s):
    """metrics.json as mtp/stages/train.py writes it."""
    n, dim, steps = m["n"], m["dim"], 30
    non_emb = m["params"]
    hist = {"step": [10, 20, 30], "loss": [n * 6.0, n * 4.5, n * 4.0], "lr": [3e-3, 2e-3, 3e-4],
            **{f"loss_head_{i}": [6.0 + i * 0.1, 4.5 + i * 0.1, 4.0 + i * 0.1] for i in range(1, n + 1)}}
    val = {"step": [15, 30], **{f"val_loss_head_{i}": [4.6 + i * 0.1, 4.1 + i * 0.1] for i in range(1, n + 1)}}
    return {"dataset": m["dataset"], "size": m["size"], "n": n, "steps": steps, "tokens_seen": steps * 8 * 64,
            "wall_s": step_s * steps, "params_total": non_emb + 2 * VOCAB * dim, "params_non_embedding": non_emb,
            "params_trunk": non_emb // 2, **{f"params_head_{i}": non_emb // (2 * n) for i in range(1, n + 1)},
            **{f"val_loss_head_{i}": val[f"val_loss_head_{i}"][-1] for i in range(1, n + 1)},
            "val_bits_per_byte": bpb, "peak_mem_bytes": int(mem_mb * 2 ** 20), "step_time_s": step_s,
            "device": "cpu", "dtype": "float32", "history": hist, "val_history": val, "train_run_id": "abc"}


@functools.lru_cache(maxsize=None)
def _real_decode(n):
    """decode.json of a tiny random model with n heads, from the real decode bench (mtp.decoding.timing, formerly
    in mtp.decoding.engine: the decode stage is being reworked beside this test)."""
    try:
        from mtp.decoding.timing import bench
    except ImportError:
        from mtp.decoding.engine import bench
    from mtp.nn.model import ModelConfig, MTPModel
    torch.manual_seed(3)  # a seed whose greedy continuations do not loop at any n (untrained models mostly loop)
    model = MTPModel(ModelConfig(vocab_size=VOCAB, dim=32, n_layers=n + 1, n_attn_heads=2, n_heads=n)).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return bench(model, [[1, 2, 3], [4, 5, 6]], [1, 2], 16, repeats=1)
    finally:
        torch.set_num_threads(threads)


def quality(degenerate=False):
    """decode.json / vllm.json "quality" from mtp.measure.output_quality: 10 varied or 10 repetitive outputs."""
    outs = [[7] * 16] * 10 if degenerate else [list(range(i, i + 16)) for i in range(10)]
    return measure.output_quality(outs)


def spread(speedup, unstable=False):
    """"speedup_spread" from mtp.measure.ratio over 3 rounds around `speedup` (spread 10%, or 60%: unstable)."""
    w = 0.3 if unstable else 0.05
    r = measure.ratio([speedup * (1 - w), speedup, speedup * (1 + w)], [1.0, 1.0, 1.0])
    return {k: r[k] for k in ("min", "max", "spread", "unstable")}


def per_prompt(tpf, prompts=10, forwards=20, shift=0):
    """[(tokens, forwards)] of `prompts` prompts pooling to `tpf` tokens per forward: prompt i is off by
    ((i + shift) % 3 - 1) tokens (shift: another prompt-to-prompt pattern, same pooled figure)."""
    return [(round(forwards * tpf) + (i + shift) % 3 - 1, forwards) for i in range(prompts)]


def fake_decode(m, tpf, speedup, lossless=True, degenerate=False, unstable=False, by_k=None):
    """decode.json from the real bench with the numbers set; by_k: tokens per forward at k = 1..n-1 (default tpf at
    every k), counted per kept prompt (per_prompt)."""
    d = copy.deepcopy(_real_decode(m["n"]))
    d.update({"dataset": m["dataset"], "size": m["size"], "prompt_len": 3, "train_run_id": "abc",
              "quality": quality(degenerate)})
    by_k = by_k or [tpf] * (m["n"] - 1)
    d["tokens_per_forward_by_k"] = [{"k": k, "tokens_per_forward": t, "per_prompt": per_prompt(t, shift=k)}
                                    for k, t in enumerate(by_k, 1)]
    for row in d["per_batch"]:
        if row["spec"]:
            row.update(speedup=speedup, tokens_per_forward=tpf, lossless=lossless,
                       speedup_spread=spread(speedup, unstable))
            row["spec"]["tokens_per_forward"] = tpf
    return d


def _vllm_rows(bs, specs, outs):
    """{name: per-batch row} of one batch size from the vLLM stage's own summarizer. specs: {name: (seconds per
    round, counters)}. mtp.serving.timing.summarize_batch (interleaved rounds: speedup and speedup_spread per
    round) where it exists; else the older mtp.stages.vllm.summarize, one row per configuration, with the
    speed-up against nospec and a spread added as measure() did (the stage is being reworked beside this test)."""
    try:
        from mtp.serving.timing import summarize_batch
    except ImportError:
        from mtp.stages.vllm import summarize
        rows = {name: summarize(bs, secs, outs, counts) for name, (secs, counts) in specs.items()}
        ref = rows["nospec"]["tokens_per_s"]
        for name, row in rows.items():
            row["speedup"] = row["tokens_per_s"] / ref
            row["speedup_spread"] = None if name == "nospec" else spread(row["speedup"])
        return rows
    return summarize_batch(bs, {name: secs for name, (secs, _) in specs.items()},
                           {name: outs for name in specs}, {name: counts for name, (_, counts) in specs.items()})


def fake_vllm(m, tpf_per_draft, ngram=1.3, draft=1.5):
    """vllm.json as mtp/stages/vllm.py writes it, its per-batch rows from the stage's summarizer (_vllm_rows)."""
    from mtp.stages.vllm import flat_metrics
    drafts, outs = 100, [[0] * 8, [0] * 8]  # 16 new tokens per timed run: nospec runs at 100 tokens/s

    def counters(k, tpf):
        accepted = round(drafts * (tpf - 1)) if k else 0
        return {"num_drafts": drafts if k else 0, "num_draft_tokens": drafts * k, "num_accepted_tokens": accepted,
                "num_accepted_tokens_per_pos": [accepted // k] * k if k else []}

    confs = [("nospec", 0, 1.0, 1.0)] + [(f"heads_k{k}", k, 1 + tpf_per_draft * k, 0.8 * (1 + tpf_per_draft * k))
                                         for k in range(1, m["n"])]
    confs += [("ngram", 3, ngram + 0.1, ngram), ("draft", 3, draft + 0.2, draft)]
    specs = {name: ([0.16 / speedup] * 3, counters(k, tpf)) for name, k, tpf, speedup in confs}
    per_bs = {bs: _vllm_rows(bs, specs, outs) for bs in (1, 2)}
    def alone(k, tpf):  # each of 10 kept prompts decoded alone: 10 drafts each
        pairs = [(f, max(0, t - f)) for t, f in per_prompt(tpf, forwards=10)] if k else [(0, 0)] * 10
        return [{"tokens": [0] * 8, "num_drafts": f, "num_draft_tokens": f * k, "num_accepted_tokens": a,
                 "num_accepted_tokens_per_pos": [a // k] * k if k else []} for f, a in pairs]

    configs = [{"name": name, "k": k, "method": None, "speculative_config": None, "startup_s": 1.0,
                "per_prompt": alone(k, tpf), "per_batch": [per_bs[bs][name] for bs in (1, 2)]}
               for name, k, tpf, _ in confs]
    result = {"dataset": m["dataset"], "size": m["size"], "n": m["n"], "train_run_id": "abc", "vllm_version": "0.32.0",
              "device": "cpu", "dtype": "float32", "batch_sizes": [1, 2],
              "draft_model": f"{m['dataset']}/{m['size']}-n1", "note": "", "configs": configs,
              "crosscheck": {"ok": True, "problems": []}, "quality": quality()}
    result["metrics"] = flat_metrics(result)
    return result


def fake_code(m, pass1, problems=100):
    """eval_code.json as mtp/evals/code.py writes it."""
    from mtp.evals.passk import mean_pass_at_k
    out = {"model": {k: m[k] for k in ("dataset", "size", "n")}, "config": {"k": [1]}, "benchmarks": {}, "metrics": {}}
    for bench in ("humaneval", "mbpp"):
        counts = [(1, int(i < round(pass1 * problems))) for i in range(problems)]
        res = {"benchmark": bench, "num_problems": problems, "num_problems_total": 164,
               "pass_at_k": {"pass@1": mean_pass_at_k(counts, 1)}, "skipped": {},
               "problems": [{"task_id": f"T/{i}", "n": 1, "correct": c, "samples": []}
                            for i, (_, c) in enumerate(counts)]}
        out["benchmarks"][bench] = res
        out["metrics"][f"{bench}_pass_at_1"] = res["pass_at_k"]["pass@1"]
    return out


def fake_polynomial(m, acc, num_tests=200):
    """eval_polynomial.json as mtp/evals/polynomial.py writes it: the first round(acc * num_tests) items right."""
    from mtp.evals.polynomial import summary
    items = {k: [int(i < round(a * num_tests)) for i in range(num_tests)] for k, a in acc.items()}
    acc = {k: sum(v) / num_tests for k, v in items.items()}
    return {"dataset": m["dataset"], "size": m["size"], "n": m["n"], "task": "polynomial", "num_tests": num_tests,
            "seed": 0, "max_ops_train": 5, "accuracy_by_m": {str(k): a for k, a in acc.items()},
            "correct_by_m": {str(k): v for k, v in items.items()}, "metrics": summary(acc, 5)}


def fake_induction(m, acc, num_tests=20, per_story=6):
    """eval_induction.json as mtp/evals/induction.py writes it: the first round(acc * scored) positions right."""
    flat = [int(i < round(acc * num_tests * per_story)) for i in range(num_tests * per_story)]
    stories = [flat[i:i + per_story] for i in range(0, len(flat), per_story)]
    return {"dataset": m["dataset"], "size": m["size"], "n": m["n"], "task": "induction", "num_tests": num_tests,
            "seed": 0, "context": 64, "correct_by_story": stories,
            "metrics": {"induction_acc": sum(flat) / len(flat), "induction_scored_tokens": len(flat)}}


def model_dict(cfg, m):
    """A ModelSpec as the dict the fake results read: its keys (n = n_heads) and its preset's shape."""
    return {"dataset": m.dataset, "size": m.size, "slot": m.slot, "head_type": m.head_type, "seed": m.seed,
            "family": m.family, "n": m.n_heads, "dir": m.dir, **report.shape_of(cfg, m.size)}


def write_study(cfg, good=True, only=None):
    """Result files for every model; `good`: numbers that agree with the paper, else numbers against it.
    only: the set of result keys to write (default: all the config asks for)."""
    for m in config.models(cfg):
        m = model_dict(cfg, m)
        n, d, task = m["n"], Path(m["dir"]), config.task_of(cfg["datasets"][m["dataset"]])
        byte = m["dataset"] == "code-bytes"
        gain = (n > 1) * (1 if good else -1)  # +1: the paper's direction
        tpf_at = (lambda k: 1 + 0.4 * k) if good else (lambda k: 1 + 2 / (k + 1))  # tokens per forward at k drafts
        files = {"metrics": fake_metrics(m, bpb=2.0 + 0.05 * gain * n, mem_mb=500 * (1 if good else n),
                                         step_s=0.1 * (1.05 if good else 10) ** (n > 1)),
                 "decode": fake_decode(m, tpf=tpf_at(n - 1), lossless=good, by_k=[tpf_at(k) for k in range(1, n)],
                                       speedup=(1 + (0.5 if byte == good else 0.1) * (n - 1)))}
        if task == "code":
            files["vllm"] = fake_vllm(m, tpf_per_draft=0.6 if good else 0.0)
            files["code"] = fake_code(m, pass1=0.3 - 0.1 * gain)
        if task == "polynomial":
            files["polynomial"] = fake_polynomial(m, {k: max(0.0, 0.9 - 0.1 * k + 0.05 * gain) for k in range(1, 8)})
        if task == "induction":
            files["induction"] = fake_induction(m, 0.5 + 0.2 * gain)
        for key, data in files.items():
            if (only is None or key in only) and report.expected(cfg, task, key) is None:
                write_json(d / report.result_files()[key], data)


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and not v.startswith("#")]


def check_outputs(out):
    for name in report.OUTPUTS:
        path = out / name
        assert path.exists() and path.stat().st_size > 0, name
        if name.endswith(".png"):
            data = path.read_bytes()
            assert data[:8] == PNG_SIGNATURE and len(data) > 2000, name
    parser = _Refs()
    parser.feed((out / "index.html").read_text())
    assert parser.refs
    for ref in parser.refs:
        assert "://" not in ref and not ref.startswith("/"), ref  # relative links only
        assert (out / ref).exists(), ref
    assert {r for r in parser.refs if r.endswith(".png")} == {f"{f}.png" for f in report.FIGURES}


def test_full_study_builds_and_reproduces(tmp_path):
    cfg = study_cfg(tmp_path)
    write_study(cfg, good=True)
    write_json(Path(cfg["results"]) / "bench" / "train.json", train_bench(time_ratio=1.12, mem_growth=1.01))
    out, claims = report.build(cfg)
    check_outputs(out)
    verdicts = {c["claim"]: c["verdict"] for c in claims}
    assert all(v == R or v.startswith(f"{R} at vocab") for v in verdicts.values()), verdicts
    assert len(claims) == 8
    assert not any("validation" in c["claim"] for c in claims)  # no validation-loss claim: the paper gives no number
    html = (out / "index.html").read_text()
    assert "Missing" not in html
    speculative = (out / "speculative.csv").read_text()
    assert "ngram" in speculative and "draft_model" in speculative and "self-speculative" in speculative
    assert (out / "polynomial.csv").read_text().splitlines()[0].split(",")[:4] == ["dataset", "size", "n", "m"]
    assert "Train benchmark" in (out / "cost.md").read_text()
    assert (out / "claims.csv").read_text().count("\n") == 9
    ours = {c["claim"]: c["ours"] for c in claims}
    assert "95% CI [" in ours["n > 1 helps induction at <= 30M parameters"]
    assert "95% CI [" in ours["n > 1 helps polynomial arithmetic at every m"]
    assert "95% CI [" in ours["Small models lose pass@1 with n > 1"]
    for table in ("polynomial", "induction", "code"):  # the intervals in the tables too
        header = (out / f"{table}.csv").read_text().splitlines()[0].split(",")
        assert {"diff_vs_n1", "ci95_lo", "ci95_hi"} <= set(header), table
    assert "stable" in speculative and "spread" in speculative.splitlines()[0]


def test_contrary_results_are_contradicted(tmp_path):
    cfg = study_cfg(tmp_path)
    write_study(cfg, good=False)
    bench = typed_bench(time_ratio=4.0, mem_growth=1.9)
    verdicts = {c["claim"]: c["verdict"] for c in report.claims(report.load_study(cfg), bench)}
    assert all(v == C or v.startswith(f"{C} at vocab") for v in verdicts.values()), verdicts


def test_partial_study_says_what_is_missing(tmp_path):
    cfg = study_cfg(tmp_path, vllm=False)
    write_study(cfg, only={"metrics"})
    out, claims = report.build(cfg)
    check_outputs(out)
    spec = (out / "speculative.md").read_text()
    assert "decode.json missing" in spec and "mtp decode" in spec
    assert "vllm.json disabled (vllm.enabled: false)" in spec
    assert "eval_code.json missing" in (out / "code.md").read_text()
    assert "bench/train.json: missing" in (out / "cost.md").read_text()
    assert "no data" in (out / "induction.csv").read_text()
    verdicts = {c["claim"]: c["verdict"] for c in claims}
    assert verdicts["Self-speculative decoding is lossless"] == D
    assert verdicts["Small training-time overhead of n heads"] == D  # metrics.json's step times are no evidence
    html = (out / "index.html").read_text()
    assert "Missing: decode.json missing" in html


def test_unreadable_result_is_reported_not_fatal(tmp_path):
    cfg = study_cfg(tmp_path, decode=False, vllm=False, code=False, synthetic=False)
    write_study(cfg, only={"metrics"})
    bad = Path(config.models(cfg)[0].dir) / "metrics.json"
    bad.write_text("{not json")
    records = report.load_study(cfg)
    assert any(n.startswith("metrics.json unreadable") for n in report.missing_notes(records, ["metrics"]))
    assert report.status_rows(records)[0]["metrics.json"].startswith("unreadable")
    assert len(report.val_loss_rows(records)) == len(records) - 1


def test_rule_declares_exactly_the_outputs_with_captions():
    """report.smk builds its output from mtp.report.outputs.shown: every file of OUTPUTS once, each but index.html
    with a caption that exists (the dry run of test_pipeline parses the rule itself)."""
    from mtp.report.outputs import shown
    smk = (ROOT / "workflow" / "rules" / "report.smk").read_text()
    assert 'shown("../report")' in smk and "report_outputs()," in smk
    assert "mtp report --config {input.config} 2>&1 | tee {log}" in smk
    declared = shown("../report")
    assert sorted(name for name, _ in declared) == sorted(report.OUTPUTS)
    for name, how in declared:
        assert how or name == "index.html", name
        if how:
            assert (ROOT / "workflow" / "rules" / how["caption"]).resolve().exists(), how["caption"]


def test_every_claim_belongs_to_one_section_in_rank_order():
    """The claims table is the sections' Claims (mtp.report.outputs) in rank order, each named once: its rows are
    exactly the claims the sections declare, and no claim function is imported by the claims module itself."""
    from mtp.registry import resolve
    from mtp.report.outputs import SECTIONS
    declared = [(c.rank, c.make) for s in SECTIONS for c in s.claims]
    assert sorted(r for r, _ in declared) == list(range(1, len(declared) + 1))
    assert len({m for _, m in declared}) == len(declared)
    rows = report.claims([], None)
    made = [resolve(m)(*(([],) + ((None,) if "cost" in m else ()))) for _, m in sorted(declared)]
    assert [r["claim"] for r in rows] == [c["claim"] for c in made]
    assert "import claim_" not in (ROOT / "mtp" / "report" / "claims.py").read_text()


def test_importing_the_report_needs_neither_torch_nor_mlflow():
    """Snakemake imports mtp.report.outputs while it parses the workflow; the report itself plots with matplotlib."""
    code = "import sys, mtp.report; print(sorted({'torch', 'mlflow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_cli_logs_the_report_to_the_parent_run(tiny_cfg, tmp_path, monkeypatch):
    import mlflow

    from mtp import tracking
    from mtp.cli import main
    monkeypatch.chdir(tmp_path)  # mlruns/ (the artifact store of a sqlite URI) lands here
    write_study(tiny_cfg, only={"metrics"})
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(tiny_cfg))
    assert main(["report", "--config", str(path)]) == 0
    parent = json.loads(tracking.parent_file(tiny_cfg).read_text())["parent_run_id"]
    logged = {Path(a.path).name for a in mlflow.MlflowClient(tracking.uri(tiny_cfg)).list_artifacts(parent, "report")}
    assert logged == set(report.OUTPUTS)
    induction = (Path(tiny_cfg["results"]) / "report" / "induction.md").read_text()
    assert "eval_induction.json missing" in induction  # the tiny study has induction models, not yet scored


# ---------------------------------------------------------------- what makes a number evidence

MEMORY = "Peak training memory stays flat in n (memory-efficient backward)"
TPF = "Tokens per forward grow with the number of heads used"
BYTES = "Byte-level n=8 gives the largest speculative gain"
INDUCTION = "n > 1 helps induction at <= 30M parameters"
POLYNOMIAL = "n > 1 helps polynomial arithmetic at every m"


def _rewrite(cfg, dataset, family, n, key, change):
    """Change result `key` of model <dataset>/<family>-n<n> at every training seed."""
    ms = [m for m in config.models(cfg) if (m.dataset, m.family, m.n_heads) == (dataset, family, n)]
    assert ms
    for m in ms:
        path = Path(m.dir) / report.result_files()[key]
        data = json.loads(path.read_text())
        change(data)
        write_json(path, data)


def _claims(cfg, bench=None):
    return {c["claim"]: c for c in report.claims(report.load_study(cfg), bench)}


def test_degenerate_output_is_never_scored(tmp_path):
    cfg = study_cfg(tmp_path, vllm=False)
    write_study(cfg, good=True)
    before = _claims(cfg)
    assert before[BYTES]["verdict"] == R and before[TPF]["verdict"] == R  # non-degenerate models get a verdict
    reason = quality(degenerate=True)["reason"].removeprefix("degenerate output: ")
    assert reason.startswith("10 of 10 continuations")
    _rewrite(cfg, "code-bytes", "deep", 8, "decode", lambda d: d.update(quality=quality(degenerate=True)))
    after = _claims(cfg)
    assert after[BYTES]["verdict"] == f"no data: degenerate output ({reason})"
    assert all(f"code-bytes/deep-s{s}-n8: no data: degenerate output" in after[TPF]["ours"] for s in SEEDS)
    assert after[TPF]["verdict"] == R  # the other models still make the claim
    rows = [x for x in report.speculative_rows(report.load_study(cfg)) if (x["dataset"], x["n"]) == ("code-bytes", 8)]
    assert rows and all(x["speedup"] == x["tokens_per_forward"] == "no data: degenerate output" for x in rows)
    assert all(x["output"].endswith(f"({reason})") for x in rows)
    for m in config.models(cfg):  # every model degenerate: every speed claim has no data
        _rewrite(cfg, m.dataset, m.family, m.n_heads, "decode", lambda d: d.update(quality=quality(True)))
    every = _claims(cfg)
    for claim in (TPF, BYTES):
        assert every[claim]["verdict"] == f"no data: degenerate output ({reason})", claim


def test_tokens_per_forward_claim_reads_every_k_and_names_dropped_continuations(tmp_path):
    """The claim's evidence: each model's counts at k = 1..n-1 with their intervals, not the timed figures across n;
    the prompts a file dropped (degenerate continuations) are named; a file from before prompts were dropped is
    not scored."""
    cfg = study_cfg(tmp_path, vllm=False)
    write_study(cfg, good=True)

    def drop_two_and_slow_down(d):  # two looping continuations dropped; the timed k = n-1 figure made low
        d["quality"] = measure.output_quality([[7, 8] * 8] * 2 + [list(range(i, i + 16)) for i in range(8)])
        for row in d["per_batch"]:
            if row["spec"]:
                row["tokens_per_forward"] = row["spec"]["tokens_per_forward"] = 1.1
    _rewrite(cfg, "code-bytes", "deep", 8, "decode", drop_two_and_slow_down)
    claim = _claims(cfg)[TPF]
    assert claim["verdict"] == R  # n=8's timed 1.1 is below n=4's 2.2, but its counts rise at every k
    assert "native code-bytes/deep-s0-n8 (10 prompts): k=1 1.40, k=2 1." in claim["ours"]
    assert "95% CI [+0.3" in claim["ours"]
    assert "degenerate continuations dropped: native code-bytes/deep-s0-n8 2 of 10 (prompts 0, 1)" in claim["ours"]
    rows = [x for x in report.speculative_rows(report.load_study(cfg)) if (x["dataset"], x["n"]) == ("code-bytes", 8)]
    assert rows and all(x["dropped"] == "2 of 10 (prompts 0, 1)" for x in rows)
    assert [x["draft_tokens"] for x in rows if x["method"] == "self-speculative, untimed"] == list(range(1, 8)) * 3
    _rewrite(cfg, "code-bytes", "deep", 8, "decode", lambda d: d["quality"].pop("kept"))
    claim = _claims(cfg)[TPF]
    assert "native code-bytes/deep-s0-n8: no data: decode.json counts degenerate continuations" in claim["ours"]
    assert "native code-bytes/deep-s0-n8 (" not in claim["ours"]


def test_claims_are_about_the_papers_heads_only(tmp_path):
    """A sequential-head model whose induction is worse than n = 1 stays out of the paper's claims (its heads are
    not the paper's; the Head types section compares them) but in the lossless check and the heads table."""
    cfg = study_cfg(tmp_path, vllm=False, extra_sweeps=[{"dataset": "ind", "sizes": ["micro"], "n_heads": [2],
                                                         "head_types": ["sequential"]}])
    write_study(cfg, good=True)
    m = model_dict(cfg, next(m for m in config.models(cfg) if m.head_type == "sequential"))
    write_json(Path(m["dir"]) / report.result_files()["induction"], fake_induction(m, 0.1))
    claims = _claims(cfg)
    assert claims[INDUCTION]["verdict"] == R and "sequential" not in claims[INDUCTION]["ours"]
    assert any(r["head_type"] == "sequential" for r in report.head_rows(report.load_study(cfg)))
    lossless = "Self-speculative decoding is lossless"
    assert claims[lossless]["verdict"] == R
    write_json(Path(m["dir"]) / report.result_files()["decode"], fake_decode(m, 1.4, 1.2, lossless=False))
    assert _claims(cfg)[lossless]["verdict"] != R  # every head type's decoding is checked


def test_decode_without_quality_check_is_not_scored(tmp_path):
    cfg = study_cfg(tmp_path, vllm=False)
    write_study(cfg, good=True)
    _rewrite(cfg, "code-bytes", "deep", 8, "decode", lambda d: d.pop("quality"))
    assert _claims(cfg)[BYTES]["verdict"].startswith("no data: decode.json has no output-quality check")


def _unstable_study(tmp_path):
    """A good study whose deep n = 8 model's speed-ups all have rounds that disagree (spread 60%)."""
    cfg = study_cfg(tmp_path, vllm=False)
    write_study(cfg, good=True)

    def unstable(d):
        for row in d["per_batch"]:
            if row["spec"]:
                row["speedup_spread"] = spread(row["speedup"], unstable=True)
    _rewrite(cfg, "code-bytes", "deep", 8, "decode", unstable)
    return cfg


def test_unstable_speedup_gives_no_verdict(tmp_path):
    cfg = _unstable_study(tmp_path)
    claim = _claims(cfg)[BYTES]
    assert claim["verdict"] == "no verdict: unstable timing (spread 60%)"
    assert "UNSTABLE" in claim["ours"]
    rows = [x for x in report.speculative_rows(report.load_study(cfg))
            if (x["dataset"], x["n"], x["method"]) == ("code-bytes", 8, "self-speculative")]
    assert rows and all(x["timing"] == "unstable: no verdict" and x["spread"] == pytest.approx(0.6) for x in rows)
    assert all(isinstance(x["speedup"], float) for x in rows)  # the number stays, marked


def test_figure_draws_unstable_speedups_hollow_with_their_rounds(tmp_path):
    from mtp.report.speculative_plot import _panel, _panel_rows
    from mtp.report.figures import plt
    cfg = _unstable_study(tmp_path)
    xs = [x for x in _panel_rows(report.speculative_rows(report.load_study(cfg)), "native", "speedup")
          if x["batch_size"] == 1]
    fig, ax = plt().subplots()
    _panel(ax, xs, "native", "speedup", "speed-up", "t")
    faces = {(ln.get_xdata()[0], round(float(ln.get_ydata()[0]), 6)): ln.get_markerfacecolor() for ln in ax.lines
             if len(ln.get_xdata()) == 1 and ln.get_marker() == "o"}
    hollow = {k for k, f in faces.items() if f == "none"}
    want = {(x["heads_used"], round(x["speedup"], 6)) for x in xs if x["heads_used"] and x["timing"]
            and x["timing"].startswith("unstable")}
    assert want and hollow == want  # the unstable ones, and only they
    assert ax.collections  # min-max bars of the timed rounds


def test_val_loss_figure_draws_a_line_per_head_type_with_seeds_as_points(tmp_path, monkeypatch):
    """Models of one n with other head types get a line of their own (not one line jumping between them at one
    size), and a size's training seeds are points beside one line through their mean."""
    from mtp.report import training
    cfg = study_cfg(tmp_path, vllm=False, extra_sweeps=[{"dataset": "ind", "sizes": ["micro"], "n_heads": [2],
                                                         "head_types": ["sequential"]}])
    write_study(cfg, good=True)
    figs = []
    monkeypatch.setattr(training, "save", lambda fig, path: figs.append(fig))
    training.plot_val_loss(report.load_study(cfg), tmp_path / "val_loss.png")
    ax = next(a for a in figs[0].axes if a.get_title() == "ind: head-1 validation loss")
    lines = {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
    assert set(lines) == {"n=1", "n=2", "n=2 sequential"}
    assert all(len(ln.get_xdata()) == 1 for ln in lines.values())  # one size: one point per line
    assert len([ln for ln in ax.lines if ln.get_label().startswith("_")]) == 2  # the seeds of n = 1 and n = 2


def test_memory_claim_has_no_data_without_the_train_benchmark(tmp_path):
    cfg = study_cfg(tmp_path)
    write_study(cfg, good=False)  # metrics.json: process peak memory grows n-fold; it must not be judged
    claim = _claims(cfg, bench=None)[MEMORY]
    assert claim["verdict"] == D and claim["ours"].startswith("no data: bench/train.json")
    assert _claims(cfg, bench=typed_bench(1.1, mem_growth=1.05))[MEMORY]["verdict"] == f"{R} at vocab 257 and 32768"
    assert _claims(cfg, bench=typed_bench(1.1, mem_growth=1.5))[MEMORY]["verdict"] == f"{C} at vocab 257 and 32768"


def test_paired_claims_need_the_interval_to_exclude_zero(tmp_path):
    cfg = study_cfg(tmp_path, decode=False, vllm=False, code=False)
    write_study(cfg, good=True)
    assert _claims(cfg)[INDUCTION]["verdict"] == R  # 0.7 vs 0.5 over 120 positions, at each of 3 seeds
    twos = [model_dict(cfg, m) for m in config.models(cfg) if (m.dataset, m.n_heads) == ("ind", 2)]
    assert [m["seed"] for m in twos] == SEEDS
    for m in twos:
        write_json(Path(m["dir"]) / "eval_induction.json", fake_induction(m, 0.5 + 1 / 120))  # one position better
    claim = _claims(cfg)[INDUCTION]
    assert claim["verdict"].startswith("inconclusive (95% CI [") and claim["verdict"].endswith("includes 0)")
    assert "95% CI [" in claim["ours"] and "3 seeds x 20 items" in claim["ours"]
    assert claim["training_runs"] == "6 training runs, 3 seeds per model"
    row = next(x for x in report.induction_rows(report.load_study(cfg)) if x["n"] == 2)
    assert row["ci95_lo"] <= 0 <= row["ci95_hi"]
    for m in twos:
        write_json(Path(m["dir"]) / "eval_induction.json", fake_induction(m, 0.3))  # clearly worse
    assert _claims(cfg)[INDUCTION]["verdict"] == C
    write_json(Path(twos[0]["dir"]) / "eval_induction.json", fake_induction(twos[0], 0.9))  # one seed the other way
    assert _claims(cfg)[INDUCTION]["verdict"].startswith("inconclusive")
    # polynomial: one m within noise makes the every-m claim inconclusive
    polys = [model_dict(cfg, m) for m in config.models(cfg) if (m.dataset, m.n_heads) == ("poly", 2)]
    acc = {k: max(0.0, 0.9 - 0.1 * k + 0.05) for k in range(1, 8)}
    acc[3] = 0.9 - 0.3 + 1 / 200  # one test item better at m=3
    for p in polys:
        write_json(Path(p["dir"]) / "eval_polynomial.json", fake_polynomial(p, acc))
    assert _claims(cfg)[POLYNOMIAL]["verdict"].startswith("inconclusive (m=3: 95% CI [")
    # an eval file without per-item results gives no interval: no data
    for p in polys:
        write_json(Path(p["dir"]) / "eval_polynomial.json",
                   {k: v for k, v in fake_polynomial(p, acc).items() if k != "correct_by_m"})
    claim = _claims(cfg)[POLYNOMIAL]
    assert claim["verdict"] == D and "no per-item results" in claim["ours"]


def test_one_training_seed_is_exploratory(tmp_path):
    """The same results as a 3-seed study that reproduces, from one seed per model: never 'reproduced'."""
    cfg = study_cfg(tmp_path, decode=False, vllm=False)
    for sweep in cfg["sweeps"]:
        sweep.pop("seeds", None)
    write_study(cfg, good=True)
    claims = _claims(cfg)
    for name in (INDUCTION, POLYNOMIAL, "Small models lose pass@1 with n > 1"):
        assert claims[name]["verdict"].startswith("one seed: exploratory (") and "lies above 0" in claims[name]["verdict"]
        assert claims[name]["training_runs"].endswith("one seed per model"), claims[name]["training_runs"]
    assert claims[INDUCTION]["training_runs"] == "2 training runs, one seed per model"


def test_heads_on_a_pretrained_model_have_their_own_section(tmp_path):
    """A model with init_from: its row carries training minutes, each new head's agreement, native and vLLM
    figures at every k, pass@1 and whether speculative completions equalled greedy; the other models have none."""
    src = str(tmp_path / "results" / "models" / "code" / "micro-n1")
    cfg = study_cfg(tmp_path, extra_sweeps=[{"dataset": "code", "sizes": ["micro"], "n_heads": [4],
                                             "init_from": f"mtp:{src}", "train": {"freeze": "trunk"}}])
    write_study(cfg, good=True)
    added = config.find_model(cfg, "code", "micro-init", 4)
    path = Path(added.dir) / "metrics.json"
    m = json.loads(path.read_text())
    m["val_history"].update(wall_s=[60.0, 150.0], val_agree_head_2=[0.2, 0.4], val_agree_head_3=[0.1, 0.2],
                            val_agree_head_4=[0.05, 0.1])
    m.update(val_agree_head_2=0.4, val_agree_head_3=0.2, val_agree_head_4=0.1)
    write_json(path, m)
    _rewrite(cfg, "code", "micro-init", 4, "code", lambda c: c["benchmarks"]["mbpp"].update(
        lossless={"draft_tokens": 3, "identical": False, "mismatched": ["T/3"]}))
    out, _ = report.build(cfg)
    check_outputs(out)
    rows = report.pretrained_rows(report.load_study(cfg))
    assert [r["model"] for r in rows] == ["code/micro-init-n4"]
    (row,) = rows
    assert row["train_minutes"] == 2.5 and row["val_agree_head_4"] == 0.1 and row["source"] == f"mtp:{src}"
    assert row["tokens_per_forward"] == pytest.approx(2.2) and row["native_speedup_b1"] is not None
    assert [row[f"vllm_k{k}_tokens_per_forward"] for k in (1, 2, 3)] == pytest.approx([1.6, 2.2, 2.8])
    assert row["vllm_ngram_speedup_b1"] == pytest.approx(1.3) and row["vllm_equals_native"] is True
    assert row["mbpp_speculative_equals_greedy"] is False and row["humaneval_speculative_equals_greedy"] is None
    assert "micro-init-n4" in (out / "pretrained.md").read_text()
