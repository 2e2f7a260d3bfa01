"""vLLM: the plugin is discoverable; the stage's pieces (configurations, draft choice, cross-check,
bench keys); and, slow, `mtp vllm` end to end on tiny trained models: vLLM greedy == native
greedy for every configuration and batch size, and our heads' accepted-token counts per draft
position at batch 1 == the native engine's, with no vLLM process left behind.

The slow part starts LLM() five times, all inside one `mtp vllm` run (module fixture `study`), and
keeps them alive side by side for two interleaved timing rounds: nospec, heads k=1, heads k=2, ngram,
draft model (mini-n1: at most a quarter of the target's parameters). Random-weight models accept
almost no drafts, so the models are trained for 150 steps on a repetitive corpus (words drawn at
random from a short list): heads 2..3 learn to finish a word, not which word comes next, so drafts are a mix
of accepted and rejected. vLLM's CPU attention needs head_dim >= 32: dim 64, 2 attention heads (mini: 32, 1).
"""
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mtp import UserError, config, measure
from mtp.decoding import engine as D
from mtp.decoding import timing as DT
from mtp.stages import bench as VB
from mtp.stages import vllm as S
from mtp.data import TokenData
from mtp.io import sha256_file

BIN = Path(sys.executable).parent
WORDS = ["def ", "return ", "import ", "class ", "self.", "print(", "lambda ", "yield ", "while ", "for x in "]


def corpus(n_words, seed):
    r = random.Random(seed)
    return list("".join(r.choice(WORDS) for _ in range(n_words)).encode())


# ---------------------------------------------------------------- fast


def test_plugin_is_discovered_by_vllm():
    pytest.importorskip("vllm")
    from vllm import ModelRegistry
    from vllm.plugins import load_plugins_by_group

    import mtp.serving.plugin
    plugins = load_plugins_by_group("vllm.general_plugins")  # what vLLM's processes run at start-up
    assert plugins.get("mtp") is mtp.serving.plugin.register
    plugins["mtp"]()
    plugins["mtp"]()  # idempotent: vLLM may load plugins more than once
    assert {"MTPLlamaForCausalLM", "MTPDrafter"} <= set(ModelRegistry.get_supported_archs())


def test_vllm_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(UserError, match=r"pip install -e '\.\[cpu\]'"):
        S.import_vllm()


def test_vllm_workers_do_not_inherit_blas_thread_counts(monkeypatch):
    """vLLM pins its CPU worker to its own cores; an inherited MKL_NUM_THREADS=2 (Snakemake sets it to a
    rule's threads) made nospec ~45x slower on a 2-core machine."""
    pytest.importorskip("vllm")
    monkeypatch.setenv("MKL_NUM_THREADS", "2")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    S.import_vllm()
    assert "MKL_NUM_THREADS" not in os.environ and "OPENBLAS_NUM_THREADS" not in os.environ


def _cfg(tmp_path, n_heads=(1, 3), sizes=("toy",), vllm=None, sweeps=None, datasets=None):
    raw = {"results": str(tmp_path / "results"), "train": {},
           "model_presets": {"toy": {"dim": 64, "n_layers": 5, "n_attn_heads": 2, "n_kv_heads": 1},  # grouped-query
                             "big": {"dim": 128, "n_layers": 5, "n_attn_heads": 4},
                             "mini": {"dim": 32, "n_layers": 2, "n_attn_heads": 1},
                             "mini3": {"dim": 32, "n_layers": 3, "n_attn_heads": 1}},
           "datasets": {"toy": {"source": {"kind": "stdlib"}}, **(datasets or {})},
           "sweeps": sweeps or [{"dataset": "toy", "sizes": list(sizes), "n_heads": list(n_heads)}],
           "decode": {"num_prompts": 4, "prompt_len": 20, "max_new_tokens": 24},
           "vllm": {"batch_sizes": [1, 2], "repeats": 1, **(vllm or {})}}
    return config.validate(raw)


def test_configurations(tmp_path):
    cfg = _cfg(tmp_path, sizes=("big", "toy"))
    exported = {"hf": "/m/hf", "drafter": "/m/hf-drafter"}
    from mtp import head_types
    served = head_types.get("transformer").behaviour().served
    runs = S.configurations(served, exported, cfg["vllm"], [1, 2], "/d/hf")
    assert [r[0] for r in runs] == ["nospec", "heads_k1", "heads_k2", "ngram", "draft"]
    assert runs[0][2] == runs[3][2] == runs[4][2] == {"mtp_serve_heads": 1}  # baselines: head 1 only
    assert runs[2][2] == {"mtp_serve_heads": 3} and runs[2][3] == {
        "method": "medusa", "model": "/m/hf-drafter", "num_speculative_tokens": 2}
    assert runs[3][3]["method"] == "ngram" and runs[4][3]["model"] == "/d/hf"
    base = S.configurations(served, {"hf": "/m/hf", "drafter": None}, cfg["vllm"], [], None)
    assert [r[0] for r in base] == ["nospec", "ngram"]
    recursive = S.configurations(head_types.get("recursive").behaviour().served, {"hf": "/m/hf", "drafter": None},
                                 cfg["vllm"], [1, 2], None)  # vLLM's own MTP route: no drafter, no plugin
    assert recursive[0][2] == {} and recursive[2][2:] == ({}, {"method": "mtp", "num_speculative_tokens": 2})


def test_draft_tokens_say_every_k_or_a_list(tmp_path):
    """vllm.draft_tokens: all (the default) or null serve our heads at every k = 1..n-1; a list is clamped to n-1."""
    assert _cfg(tmp_path)["vllm"]["draft_tokens"] == "all"
    assert S.draft_ks(_cfg(tmp_path, vllm={"draft_tokens": "all"})["vllm"]["draft_tokens"], 4) is None
    assert S.draft_ks(None, 4) is None
    assert S.draft_ks([7], 4) == [3] and S.draft_ks([2, 1, 9], 3) == [1, 2]
    for bad in ("every", [], [0]):
        with pytest.raises(UserError, match="vllm.draft_tokens"):
            _cfg(tmp_path, vllm={"draft_tokens": bad})


def test_param_count_from_presets_matches_the_model():
    from mtp.nn.model import ModelConfig, MTPModel
    for head_type, n in (("transformer", 1), ("transformer", 3), ("linear", 2), ("medusa", 1), ("medusa", 4)):
        c = ModelConfig(vocab_size=257, dim=64, n_layers=5, n_attn_heads=2, n_heads=n, head_type=head_type)
        assert c.num_params == sum(p.numel() for p in MTPModel(c).parameters()), (head_type, n)


def test_draft_model_has_at_most_a_quarter_of_the_parameters(tmp_path):
    """big (dim 128 x 5) has ~1.07M parameters with the byte vocabulary, toy (64 x 5) ~300k: more than a
    quarter; mini (32 x 2) ~43k and mini3 (32 x 3) ~57k qualify, the smaller is chosen."""
    big_only = _cfg(tmp_path, sizes=("big",))
    big3 = config.find_model(big_only, "toy", "big", 3)
    assert config.draft_model_for(big_only, big3) is None  # its own n=1 twin is as big as it
    draft, note = S._draft_model(big_only, big3, big_only["vllm"])
    assert draft is None and note.startswith("no n=1 model of at most a quarter of toy/big-n3's parameters")
    assert "toy/big-n1" in note
    cfg = _cfg(tmp_path, sizes=("big", "toy"))
    assert config.draft_model_for(cfg, config.find_model(cfg, "toy", "big", 3)) is None  # toy: > a quarter
    cfg = _cfg(tmp_path, sweeps=[{"dataset": "toy", "sizes": ["big", "toy"], "n_heads": [1, 3]},
                                 {"dataset": "toy", "sizes": ["mini3", "mini"], "n_heads": [1]}])
    draft, note = S._draft_model(cfg, config.find_model(cfg, "toy", "big", 3), cfg["vllm"])
    assert (draft.size, draft.n_heads) == ("mini", 1) and not note
    assert config.draft_model_for(cfg, config.find_model(cfg, "toy", "toy", 3)).size == "mini"
    assert config.draft_model_for(cfg, config.find_model(cfg, "toy", "mini", 1)) is None  # never itself
    other = _cfg(tmp_path, sweeps=[{"dataset": "toy", "sizes": ["big"], "n_heads": [3]},
                                   {"dataset": "two", "sizes": ["mini"], "n_heads": [1]}],
                 datasets={"two": {"source": {"kind": "stdlib"}}})
    assert config.draft_model_for(other, config.find_model(other, "toy", "big", 3)) is None  # same dataset only
    off = _cfg(tmp_path, vllm={"draft_model": False})
    assert S._draft_model(off, config.find_model(off, "toy", "toy", 3), off["vllm"]) == (
        None, "draft_model baseline off (vllm.draft_model: false).")


def test_interleaved_summary_marks_an_injected_slow_round_unstable():
    from mtp.serving import timing as T
    outs = {"nospec": [[1] * 10] * 2, "heads_k2": [[1] * 10] * 2}
    zero = {"num_drafts": 0, "num_draft_tokens": 0, "num_accepted_tokens": 0, "num_accepted_tokens_per_pos": []}
    counts = {"nospec": zero, "heads_k2": {"num_drafts": 4, "num_draft_tokens": 8, "num_accepted_tokens": 6,
                                          "num_accepted_tokens_per_pos": [4, 2]}}

    def rows(nospec, heads):
        return T.summarize_batch(2, {"nospec": nospec, "heads_k2": heads}, outs, counts)

    steady = rows([1.0, 1.0, 1.0], [0.5, 0.5, 0.5])
    h = steady["heads_k2"]
    assert h["speedup"] == 2.0 and h["speedup_spread"] == {"min": 2.0, "max": 2.0, "spread": 0.0, "unstable": False}
    assert h["tokens_per_s"] == 40.0 and h["new_tokens"] == 20 and steady["nospec"]["speedup_spread"] is None
    assert h["mean_acceptance_length"] == 2.5 and h["acceptance_rate_per_pos"] == [1.0, 0.5]
    load = rows([1.0, 3.0, 1.0], [0.5, 1.5, 0.5])  # a load change that hits both alike: still 2x, stable
    assert load["heads_k2"]["speedup"] == 2.0 and not load["heads_k2"]["speedup_spread"]["unstable"]
    assert load["nospec"]["tokens_per_s_min"] == 20 / 3 and load["nospec"]["tokens_per_s_max"] == 20.0
    slow = rows([1.0, 1.0, 1.0], [0.5, 1.5, 0.5])  # one slow round of heads alone
    sp = slow["heads_k2"]["speedup_spread"]
    assert slow["heads_k2"]["speedup"] == 2.0 and sp["unstable"] and sp["min"] == pytest.approx(2 / 3)
    assert slow["heads_k2"]["speedup_all"] == pytest.approx([2.0, 2 / 3, 2.0])


def test_spec_tap_sums_scheduler_stats_per_engine():
    from types import SimpleNamespace

    from mtp.serving import timing as T
    tap = T.SpecTap()
    tap.record(SimpleNamespace(spec_decoding_stats=None), None)
    before = tap.snapshot()
    for acc in ([1, 0], [1, 1, 1]):
        stats = SimpleNamespace(num_drafts=1, num_draft_tokens=len(acc), num_accepted_tokens=sum(acc),
                                num_accepted_tokens_per_pos=acc)
        tap.record(SimpleNamespace(spec_decoding_stats=stats), None, mm_cache_stats=None, engine_idx=0)
    assert T.minus(tap.snapshot(), before) == {"num_drafts": 2, "num_draft_tokens": 5, "num_accepted_tokens": 4,
                                               "num_accepted_tokens_per_pos": [2, 1, 1]}


def test_crosscheck_reports_a_diff():
    native = [[1, 2, 3, 4], [5, 6, 7, 8]]
    counts = {"num_drafts": 2, "num_draft_tokens": 4, "num_accepted_tokens": 1, "num_accepted_tokens_per_pos": [1, 0]}
    run = {"name": "heads_k2", "k": 2,
           "per_prompt": [{"tokens": [1, 2, 3, 4], **counts}, {"tokens": [5, 6, 9, 8], **counts}],
           "per_batch": [{"batch_size": 2, "outputs": native}]}
    nat_counts = {2: [counts, {**counts, "num_accepted_tokens_per_pos": [1, 1]}]}
    problems = S.crosscheck(native, nat_counts, [run])
    assert len(problems) == 2
    assert "prompt 1: outputs differ from native greedy at new token 2: native [7, 8] vs vLLM [9, 8]" in problems[0]
    assert "acceptance counts differ" in problems[1] and "[1, 1]" in problems[1]
    assert S.crosscheck(native, {2: [counts, counts]}, [{**run, "per_prompt": [
        {"tokens": t, **counts} for t in native]}]) == []
    with pytest.raises(UserError, match="vLLM disagrees with the native engine"):
        S._fail_on_mismatch({"crosscheck": {"problems": problems}})


def test_bench_picks_the_byte_level_model_with_most_heads(tmp_path):
    cfg = _cfg(tmp_path, sweeps=[{"dataset": "bpe", "sizes": ["toy"], "n_heads": [1, 4]},
                                 {"dataset": "toy", "sizes": ["toy"], "n_heads": [2, 3]},
                                 {"dataset": "poly", "sizes": ["toy"], "n_heads": [3]}],
               datasets={"bpe": {"source": {"kind": "stdlib"}, "tokenizer": {"kind": "bpe", "vocab_size": 512}},
                         "poly": {"source": {"kind": "polynomial"}}})
    models = [m for m in config.models(cfg) if m.n_heads > 1]
    # most heads among the byte-level models (bpe-n4 has more, but is not byte level); code before polynomial
    assert VB.bench_model(cfg, models).name == "toy/toy-n3"
    assert VB.bench_model(cfg, models[::-1]).name == "toy/toy-n3"
    bpe = [m for m in models if m.dataset == "bpe"]
    assert VB.bench_model(cfg, bpe).name == "bpe/toy-n4"


# ---------------------------------------------------------------- slow: `mtp vllm` end to end


def train(n, data, steps=150, seed=0, shape=None, head_type="transformer"):
    """A few optimizer steps of the summed multi-token loss: enough for mixed acceptance. Tied embeddings (as
    SmolLM2's and Llama 3.2's)."""
    from mtp.nn.model import ModelConfig, MTPModel, head_losses
    torch.manual_seed(seed)
    shape = shape or {"dim": 64, "n_layers": 5, "n_attn_heads": 2}
    model = MTPModel(ModelConfig(vocab_size=300, n_heads=n, head_type=head_type, tie_embeddings=True, **shape))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    T, B = 64, 16
    for _ in range(steps):
        ix = torch.randint(0, len(data) - T - n, (B,))
        x = torch.stack([data[i:i + T] for i in ix])  # (B, T)
        targets = [torch.stack([data[i + 1 + h:i + 1 + h + T] for i in ix]) for h in range(n)]
        loss = sum(head_losses(model(x, ahead=targets), targets))  # ahead: read by chained heads
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


TOY_BASELINE = """
from mtp.serving.baselines import Baseline, register


def shortest_ngram(vc, k, draft_hf):
    return {"method": "ngram", "num_speculative_tokens": 1, "prompt_lookup_max": 2, "prompt_lookup_min": 1}


register(Baseline("ngram-short", "ngram k=1 (toy)", shortest_ngram, marker="v"))
"""


def _write_data(cfg, val_tail=b""):
    """The toy dataset's tokenizer and val split (the prompts' source) under the config's results; val_tail: bytes
    appended to the split."""
    from mtp.tokenizer import byte_tokenizer
    data_dir = config.data_dir(cfg, "toy")
    data_dir.mkdir(parents=True)
    byte_tokenizer().save(str(data_dir / "tokenizer.json"))
    val = np.array(corpus(400, 1) + list(val_tail), dtype=np.uint16)
    val.tofile(data_dir / "val.bin")
    (data_dir / "meta.json").write_text(json.dumps({"dtype": "uint16", "tokens_val": len(val), "bytes_val": len(val),
                                                    "vocab_size": 257,
                                                    "sha256": {"val.bin": sha256_file(data_dir / "val.bin")}}))
    return data_dir


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    pytest.importorskip("vllm")
    from mtp.checkpoint import save_model
    from mtp.tokenizer import byte_tokenizer
    root = tmp_path_factory.mktemp("vllm_study")
    # toy-n3 served by vLLM; mini-n1 (~43k parameters, toy-n3 ~300k) its draft model; two interleaved rounds
    cfg = _cfg(root, sweeps=[{"dataset": "toy", "sizes": ["toy"], "n_heads": [3]},
                             {"dataset": "toy", "sizes": ["mini"], "n_heads": [1]}], vllm={"repeats": 2})
    cfg["tracking"]["uri"] = f"sqlite:///{root / 'mlflow.db'}"
    (root / "toy_baselines.py").write_text(TOY_BASELINE)  # a baseline registered outside the package
    cfg["extensions"] = ["toy_baselines"]
    cfg_path = root / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = torch.tensor(corpus(20000, 0))
    models = {n: train(n, data, shape=cfg["model_presets"][size]) for size, n in (("mini", 1), ("toy", 3))}
    # the last prompt: one word repeated, chosen so that toy-n3's greedy continuation loops (which word loops
    # depends on the trained weights, so on the CPU's arithmetic): the stage must drop that prompt
    data_dir = _write_data(cfg, val_tail=looping_tail(models[3], 20))
    for size, n in (("mini", 1), ("toy", 3)):
        save_model(config.find_model(cfg, "toy", size, n).dir, models[n],
                   {"dataset": "toy", "size": size, "n": n, "data_dir": str(data_dir), "train_run_id": f"run{n}"})
    torch.set_num_threads(threads)
    tag = f"mtptest{os.getpid()}"  # vLLM titles its processes with this prefix: find leftovers by it
    env = {**os.environ, "VLLM_PROCESS_NAME_PREFIX": tag, "PYTHONPATH": str(root)}
    t0 = time.perf_counter()
    proc = subprocess.run([str(BIN / "mtp"), "vllm", "--config", str(cfg_path), "--dataset", "toy", "--size", "toy",
                           "--n", "3"], capture_output=True, text=True, env=env, timeout=1500)
    wall = time.perf_counter() - t0
    out_path = Path(config.find_model(cfg, "toy", "toy", 3).dir) / "vllm.json"
    result = json.loads(out_path.read_text()) if out_path.exists() else None
    print(f"\nmtp vllm: {wall:.0f} s wall; start-up per LLM(): "
          + ", ".join(f"{r['name']} {r['startup_s']:.0f} s" for r in (result or {}).get("configs", [])))
    for r in (result or {}).get("configs", []):
        for row in r["per_batch"]:
            print(f"  {r['name']} batch {row['batch_size']}: own engine {row['cpu_s']:.2f} CPU-s, other engines "
                  f"{row['other_engines_cpu_s']:.2f} CPU-s during {sum(row['seconds_all']):.2f} s timed")
    prompts = DT.val_prompts(TokenData(data_dir, "val"), 4, 20)  # what the stage used
    return {"proc": proc, "result": result, "cfg": cfg, "models": models, "tag": tag, "prompts": prompts}


def looping_tail(model, prompt_len, new_tokens=24):
    """Bytes of one word repeated whose last prompt_len bytes, as a prompt, the model continues greedily in a loop
    (mtp.measure calls the continuation degenerate); the first such word of WORDS."""
    for word in WORDS:
        tail = (word * prompt_len).encode()[-prompt_len:]
        out = D.decode(model, [list(tail)], new_tokens, None, 0, batch_size=1)[0][0]
        if measure.continuation_stats(list(out))["degenerate"]:
            return tail
    pytest.fail("no repeated word makes the trained toy model loop: the stage's prompt dropping goes unexercised")


def naive_greedy(model, prompt, max_new_tokens):
    """Head-1 greedy by recomputing the whole sequence with model(idx) (no cache, no mtp.decoding.engine)."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            seq.append(int(model(torch.tensor([seq]), heads=[0])[0][0, -1].argmax()))
    return seq[len(prompt):]


@pytest.mark.slow
def test_stage_runs_and_records(study):
    from mtp import tracking
    proc, result = study["proc"], study["result"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cross-checks against the native engine: ok" in proc.stdout
    assert [r["name"] for r in result["configs"]] == ["nospec", "heads_k1", "heads_k2", "ngram", "draft", "ngram-short"]
    assert result["draft_model"] == "toy/mini-n1" and result["crosscheck"]["ok"] and result["vllm_version"]
    # the kept prompts: those whose native greedy continuation is not degenerate (mtp.measure); all others dropped
    q = result["quality"]
    greedy = D.decode(study["models"][3], study["prompts"], 24, None, 0, batch_size=1)[0]
    assert q == measure.output_quality(greedy) and q["prompts"] == result["num_prompts"] == 4
    m, kept = result["metrics"], result["timed_prompts"]
    assert kept == len(q["kept"]) >= 2 and m["vllm_degenerate_prompts"] == 4 - kept >= 1  # the looping prompt
    assert all(len(r["per_prompt"]) == kept for r in result["configs"])
    for key in ("vllm_nospec_tokens_per_s_b1", "vllm_heads_k2_speedup_b2", "vllm_heads_k2_accept_rate_pos2_b1",
                "vllm_heads_k1_mean_accept_len_b1", "vllm_ngram_speedup_b1", "vllm_draft_accept_rate_b2"):
        assert m[key] is not None and m[key] > 0, key
    for r in result["configs"]:
        assert r["startup_s"] > 0
        for row in r["per_batch"]:
            assert row["new_tokens"] == kept * 24 and row["tokens_per_s"] > 0 and len(row["tokens_per_s_all"]) == 2
            assert row["tokens_per_s_min"] <= row["tokens_per_s"] <= row["tokens_per_s_max"]
            assert row["other_engines_cpu_s"] >= 0 and row["cpu_s"] > 0
            if r["name"] == "nospec":
                assert row["speedup"] == 1.0 and row["speedup_spread"] is None
            else:  # the median of the per-round ratios against nospec, with their spread
                sp = row["speedup_spread"]
                assert sp["min"] <= row["speedup"] <= sp["max"] and isinstance(sp["unstable"], bool)
                assert m[f"vllm_{r['name']}_speedup_spread_b{row['batch_size']}"] == sp["spread"]
    assert tracking.find_run(study["cfg"], "vllm", **config.find_model(study["cfg"], "toy", "toy", 3).run_keys())


@pytest.mark.slow
def test_bench_vllm_keys_from_a_real_run(study):
    """`mtp bench vllm`'s JSON line from the stage's real run on the n=3 model (the bench serves the same
    configurations -- no speculation, our heads at k = n-1, ngram, the draft model, the registered toy baseline --
    through the same measurement, at batch 1 and 8: vllm_stage.measure, timed by test_stage_runs_and_records):
    every key, each ratio inside its own rounds' range, values from the heads_k2 configuration."""
    out = VB.summary(study["result"], "toy/toy-n3", 2, [1, 2])
    assert out["model"] == "toy/toy-n3" and out["draft_model"] == "toy/mini-n1"
    assert isinstance(out["output_degenerate"], bool)
    k2 = next(r for r in study["result"]["configs"] if r["name"] == "heads_k2")["per_batch"]
    for b in (1, 2):
        assert out[f"nospec_tokens_per_s_b{b}"] > 0
        assert out[f"heads_vs_nospec_b{b}"] == next(r["speedup"] for r in k2 if r["batch_size"] == b)
        for key in ("heads", "ngram", "draft", "ngram-short"):
            ratio, (lo, hi) = out[f"{key}_vs_nospec_b{b}"], out[f"{key}_vs_nospec_range_b{b}"]
            assert out[f"{key}_tokens_per_s_b{b}"] > 0 and 0 < lo <= ratio <= hi, (key, b, ratio, lo, hi)
            assert isinstance(out[f"{key}_vs_nospec_unstable_b{b}"], bool)


def test_bench_vllm_without_a_trained_model_says_what_to_run(tmp_path):
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(_cfg(tmp_path)))
    proc = subprocess.run([str(BIN / "mtp"), "bench", "vllm", "--config", str(cfg_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "no trained model with n > 1 heads" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_a_registered_baseline_is_served_and_reported(study, monkeypatch):
    """The toy baseline registered by the config's `extensions` ran in the stage's process (its own engine,
    cross-checked like every configuration) and the report names it by its method."""
    from mtp.report.vllm import vllm_runs
    from mtp.result_types import Vllm
    from mtp.serving.baselines import VLLM_BASELINES
    toy = next(r for r in study["result"]["configs"] if r["name"] == "ngram-short")
    assert toy["k"] == 1  # the drafted tokens its speculative config asks for
    assert all(row["acceptance_rate"] is not None and len(row["acceptance_rate_per_pos"]) == 1
               for row in toy["per_batch"])  # its own speculative config (1 token) reached vLLM
    monkeypatch.syspath_prepend(str(Path(study["cfg"]["results"]).parent))
    config.load_extensions(study["cfg"])
    try:
        assert {r["method"] for r in vllm_runs(Vllm.read(study["result"]))} >= {"ngram k=1 (toy)", "mtp", "none"}
    finally:
        VLLM_BASELINES.pop("ngram-short")


def kept_prompts(study):
    return [study["prompts"][i] for i in study["result"]["quality"]["kept"]]


@pytest.mark.slow
def test_vllm_greedy_equals_native_greedy(study):
    model, prompts = study["models"][3], kept_prompts(study)
    native = [naive_greedy(model, p, 24) for p in prompts]
    assert D.decode(model, prompts, 24, None, 0, batch_size=1)[0] == native
    for r in study["result"]["configs"]:
        assert [p["tokens"] for p in r["per_prompt"]] == native, r["name"]
        for row in r["per_batch"]:
            assert row["outputs"] == native, (r["name"], row["batch_size"])


@pytest.mark.slow
def test_acceptance_counts_equal_native_at_batch1(study):
    model, prompts = study["models"][3], kept_prompts(study)
    for k in (1, 2):
        run = next(r for r in study["result"]["configs"] if r["name"] == f"heads_k{k}")
        native = D.acceptance_counts(model, prompts, 24, None, k)
        for nat, got in zip(native, run["per_prompt"]):
            for key in S.COUNTERS:
                assert got[key] == nat[key], (k, key)
        per_pos = [sum(p["num_accepted_tokens_per_pos"][j] for p in run["per_prompt"]) for j in range(k)]
        drafts = sum(p["num_drafts"] for p in run["per_prompt"])
        assert all(0 < a < drafts for a in per_pos), per_pos  # non-trivial: some accepted, some rejected
        # the timed runs count the same at every batch size (greedy drafts do not depend on the batch),
        # summed over the interleaved rounds
        rounds = study["result"]["repeats"]
        for row in run["per_batch"]:
            assert row["num_accepted_tokens_per_pos"] == [a * rounds for a in per_pos], row["batch_size"]
            assert row["num_drafts"] == drafts * rounds, row["batch_size"]


@pytest.mark.slow
def test_no_vllm_process_outlives_the_stage(study):
    import psutil
    left = []
    for p in psutil.process_iter(["cmdline", "name"]):
        text = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
        if study["tag"] in text:
            left.append(p.pid)
    assert not left, f"vLLM processes left: {left}"


@pytest.mark.slow
@pytest.mark.parametrize("head_type", ["medusa", "recursive"])
def test_heads_served_by_vllms_own_drafters(tmp_path, head_type):
    """A medusa model exported in vLLM's Medusa format runs through `mtp vllm` with vLLM's own `medusa` drafter, a
    recursive model exported in MiMo's layout with vLLM's own `mtp` method (no class of ours either way): greedy
    output equal to native and acceptance counts per position equal at batch 1 (medusa: from the first timed
    round at batch size 1; recursive, timed at batch size 2 only: from each prompt decoded alone, untimed)."""
    pytest.importorskip("vllm")
    from mtp.checkpoint import save_model
    cfg = _cfg(tmp_path, sweeps=[{"dataset": "toy", "sizes": ["toy"], "n_heads": [3], "head_types": [head_type]}],
               vllm={"ngram": False, "draft_model": False, "batch_sizes": [1, 2] if head_type == "medusa" else [2],
                     "draft_tokens": [2]})
    cfg["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    data_dir = _write_data(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = train(3, torch.tensor(corpus(20000, 0)), head_type=head_type)
    torch.set_num_threads(threads)
    slot = f"toy-{head_type}"
    entry = config.find_model(cfg, "toy", slot, 3)
    save_model(entry.dir, model, {"dataset": "toy", "size": "toy", "n": 3, "data_dir": str(data_dir),
                                     "train_run_id": head_type})
    proc = subprocess.run([str(BIN / "mtp"), "vllm", "--config", str(cfg_path), "--dataset", "toy", "--size",
                           slot, "--n-heads", "3"], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = json.loads((Path(entry.dir) / "vllm.json").read_text())
    assert [r["name"] for r in result["configs"]] == ["nospec", "heads_k2"]  # k = 2 only: one engine less
    assert result["crosscheck"]["ok"], result["crosscheck"]["problems"]
    k2 = result["configs"][1]
    assert len(k2["per_prompt"]) == result["timed_prompts"] and k2["per_prompt"][0]["num_drafts"] > 0
    if head_type == "medusa":
        drafter = json.loads((Path(entry.dir) / "hf-drafter" / "config.json").read_text())
        assert drafter["architectures"] == ["MedusaModel"] and k2["method"] == "medusa"
    else:
        assert not (Path(entry.dir) / "hf-drafter").exists() and k2["method"] == "mtp"
    b1 = k2["per_batch"][0]
    assert b1["num_accepted_tokens"] > 0 and len(b1["acceptance_rate_per_pos"]) == 2  # both blocks drafted
    assert b1["acceptance_rate_per_pos"][1] > 0  # the second draft accepted too (recursive: the module's 2nd depth)
