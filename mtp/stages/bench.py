"""`mtp bench train|decode|vllm`: speed and memory targets measured side by side, one JSON line each.

train: mtp.training.bench (peak step memory by n and backward, step time n vs 1 in interleaved rounds; with
--dataset/--size/--n-heads/--out the study's shapes, rule bench_training); decode: mtp.stages.decode's bench_study
(the study's models, greedy vs self-speculative); vllm (below): the study's model with most heads served by vLLM
with no speculation, our heads (k = n-1) and every baseline of mtp/serving/baselines.py (ngram, the draft model),
timed in interleaved rounds by the vLLM stage's own measurement (mtp/stages/vllm.py).
"""
import json
from pathlib import Path

from mtp import UserError, config
from mtp.args import add_config_arg
from mtp.io import write_json
from mtp.serving.baselines import VLLM_BASELINES
from mtp.stages import vllm as vllm_stage


def add_arguments(p):
    p.add_argument("what", choices=["train", "decode", "vllm"], help="which benchmark")
    add_config_arg(p)
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration (train)")
    p.add_argument("--shape", type=json.loads, default=None,
                   help='override the train shape, JSON, e.g. \'{"dim": 1024, "n_layers": 18}\'')
    p.add_argument("--dataset", help="train: measure the study's shapes of this model of the sweeps (with --size, "
                   "--n-heads): its own and its trunk at vocab 32768 (rule bench_training)")
    p.add_argument("--size", help="train: that model's size (its slot, e.g. deep)")
    p.add_argument("--n-heads", dest="n_heads", type=int, help="train: that model's number of heads")
    p.add_argument("--out", help="also write the JSON to this file (rule bench_training: <results>/bench/train.json)")


def run(args):
    if args.what == "train":
        from mtp.training import bench as train_bench
        if args.dataset:
            if args.size is None or args.n_heads is None:
                raise UserError("bench train: --dataset needs --size and --n-heads (the model whose shape to measure)")
            cfg = config.load(args.config)
            out = train_bench.bench_study_train(cfg, config.find_model(cfg, args.dataset, args.size, args.n_heads))
            if args.out:  # the report's train benchmark: written through its class
                from mtp.result_types import BenchTrain
                out = BenchTrain.check(out)
        else:
            out = train_bench.bench_train(args.shape, args.steps)
    elif args.what == "decode":
        from mtp.stages.decode import bench_study
        out = bench_study(config.load(args.config))
    else:
        out = vllm_study(config.load(args.config))
    if args.out:
        write_json(args.out, out)
    print(json.dumps(out))


def bench(cfg, dataset, size, n, batch_sizes=(1, 8)):
    """tokens/s of nospec, our heads (k = n-1), ngram and the draft model at each batch size, timed in
    interleaved rounds (vllm.repeats).

    -> {"heads_vs_nospec_b1", "ngram_vs_nospec_b1", "draft_vs_nospec_b1", ... "_b8" (each the median of
    the per-round tokens/s ratios), "<x>_vs_nospec_unstable_b<B>", "<x>_vs_nospec_spread_b<B>" and
    "<x>_vs_nospec_range_b<B>" ([min, max] ratio) (mtp.measure.ratio), "<x>_tokens_per_s_b<B>" (median),
    "model", "vllm_version", "device", "draft_model", "note", "output_degenerate", "degenerate_prompts" (prompts whose
    native greedy continuation is degenerate, left out of every figure: mtp.measure)}; a value is None where its
    configuration did not run.
    """
    entry = config.find_model(cfg, dataset, size, n)
    if int(n) < 2:
        raise UserError(f"bench vllm needs a model with n > 1 heads, got {entry.name}")
    switches = {b.switch: True for b in VLLM_BASELINES.values() if b.switch}  # every baseline on
    bcfg = config.merge(cfg, {"vllm": switches})
    result = vllm_stage.measure(bcfg, entry, list(batch_sizes), cfg["vllm"]["repeats"], ks=[int(n) - 1])
    vllm_stage._fail_on_mismatch(result)
    return summary(result, entry.name, int(n) - 1, batch_sizes)


def summary(result, model, k, batch_sizes):
    """The JSON line of `mtp bench vllm` (keys in bench()) from a vLLM stage result whose heads drafted k
    tokens (configuration heads_k<k>; other k left out): every configuration it served and every registered
    baseline (None where it did not run)."""
    out = {"model": model, "vllm_version": result["vllm_version"], "device": result["device"],
           "draft_model": result["draft_model"], "note": result.get("note", ""),
           "output_degenerate": (result.get("quality") or {}).get("degenerate"),
           "degenerate_prompts": (result.get("quality") or {}).get("degenerate_prompts")}
    by_name = {("heads" if r["name"] == f"heads_k{k}" else r["name"]): r for r in result["configs"]
               if not r["name"].startswith("heads_k") or r["name"] == f"heads_k{k}"}
    keys = dict.fromkeys(["nospec", "heads", *VLLM_BASELINES, *by_name])  # served ones, and every registered baseline
    for b in batch_sizes:
        for key in keys:
            row = next((x for x in by_name[key]["per_batch"] if x["batch_size"] == b), None) if key in by_name else None
            out[f"{key}_tokens_per_s_b{b}"] = row and row["tokens_per_s"]
            if key != "nospec":
                sp = (row or {}).get("speedup_spread") or {}
                out[f"{key}_vs_nospec_b{b}"] = row and row["speedup"]
                out[f"{key}_vs_nospec_unstable_b{b}"] = sp.get("unstable")
                out[f"{key}_vs_nospec_spread_b{b}"] = sp.get("spread")
                out[f"{key}_vs_nospec_range_b{b}"] = [sp["min"], sp["max"]] if sp else None
    return out


def bench_model(cfg, candidates):
    """The model `mtp bench vllm` times: the one with most heads on a byte-level dataset (tokenizer kind
    byte), else the one with most heads; equal heads: code before synthetic tasks, then the first in the sweep."""

    def key(m):
        ds = cfg["datasets"][m.dataset]
        return ds["tokenizer"]["kind"] == "byte", m.n_heads, config.task_of(ds) == "code"
    return max(candidates, key=key)


def vllm_study(cfg):
    """`mtp bench vllm`: bench() on the study's trained model chosen by bench_model."""
    from mtp.checkpoint import MODEL_FILE
    trained = [m for m in config.models(cfg) if m.n_heads > 1 and (Path(m.dir) / MODEL_FILE).exists()]
    if not trained:
        raise UserError("bench vllm: no trained model with n > 1 heads in this study; train one first "
                        "(snakemake ... or mtp train)")
    m = bench_model(cfg, trained)
    return bench(cfg, m.dataset, m.slot, m.n_heads)
