"""`mtp decode` (rule time_decoding) and `mtp bench decode`: time greedy vs self-speculative decoding of
trained models on their validation prompts (the engine: mtp/decoding/engine.py, its timing: mtp/decoding/timing.py).

decode.json holds the quality of each prompt's greedy continuation (mtp.measure.output_quality: which prompts
are kept, which dropped and why), and, on the kept prompts only, the timings (interleaved rounds, spread), the
counts and tokens per forward at every k; when too few prompts are kept the model's output is degenerate and its
speed figures are not scored (every prompt is then measured, as diagnostics).
"""
from pathlib import Path

import torch

from mtp import UserError
from mtp.decoding import engine as D
from mtp.decoding import timing as DT

HEADLINE_MIN_N = 4  # `mtp bench decode` headlines the best model with at least this many heads
HEADLINE_BATCHES = (1, 8)


def add_arguments(p):
    from mtp.args import add_config_arg, add_model_args
    add_config_arg(p)
    add_model_args(p)
    p.add_argument("--device", default="cpu", help="torch device to time on (default %(default)s; the rule "
                   "time_decoding reserves no GPU)")


def bench_model(cfg, entry, device="cpu"):
    """Time one trained model of the study (a mtp.spec.ModelSpec) on its val prompts.

    -> (bench result with dataset/size/prompt_len/train_run_id added, payload of the checkpoint).
    """
    from mtp import checkpoint
    dc = cfg["decode"]
    if dc.get("threads"):
        torch.set_num_threads(dc["threads"])
    model, payload = checkpoint.load_model(entry.dir, device=device)
    model.behaviour.compile_drafting = dc["compile"]  # compiled on the first (untimed) run
    k = D.check_draft_tokens(model, dc["draft_tokens"] if model.cfg.n_heads > 1 else 0)
    prompts = DT.study_prompts(cfg, payload["data_dir"])
    prompt_len = max(map(len, prompts))  # val windows: decode.prompt_len each
    if prompt_len >= model.cfg.max_seq_len:
        raise UserError(f"decode.prompt_len: {prompt_len} tokens do not fit the model's context "
                        f"(max_seq_len {model.cfg.max_seq_len}) with room to generate")
    result = DT.bench(model, prompts, dc["batch_sizes"], dc["max_new_tokens"], dc["repeats"], k,
                      temperature=dc["sample_temperature"])
    result.update({"dataset": entry.dataset, "size": entry.size, "prompts": dc["prompts"],
                   "prompt_len": prompt_len,
                   "train_run_id": payload.get("train_run_id")})
    return result, payload


def summary(r):
    """One bench result -> the per-model detail of `mtp bench decode`."""
    q = r["quality"]
    keys = ("batch_size", "speedup", "speedup_spread", "tokens_per_forward", "lossless")
    return {"n": r["n"], "draft_tokens": r["draft_tokens"], "metrics": r["metrics"],
            "quality": {"degenerate": q["degenerate"], "reason": q["reason"], "prompts": q["prompts"],
                        "degenerate_prompts": q["degenerate_prompts"], "kept_fraction": q["kept_fraction"]},
            "tokens_per_forward_by_k": {x["k"]: x["tokens_per_forward"] for x in r["tokens_per_forward_by_k"]},
            "per_batch": [{key: row[key] for key in keys} for row in r["per_batch"]]}


def headline(models):
    """Per-model summaries -> the top-level figures of `mtp bench decode`: those of the non-degenerate model
    with n >= HEADLINE_MIN_N and the highest batch-1 speed-up; null figures and a note when there is none."""
    out = {"model": None, "note": ""}
    for bs in HEADLINE_BATCHES:
        out.update({f"speedup_b{bs}": None, f"tokens_per_forward_b{bs}": None, f"unstable_b{bs}": None})
    wide = {name: m for name, m in models.items() if m["n"] >= HEADLINE_MIN_N}
    ok = {name: m for name, m in wide.items() if not m["quality"]["degenerate"]}
    if not wide:
        out["note"] = f"no model with n >= {HEADLINE_MIN_N} heads was timed"
        return out
    if not ok:
        out["note"] = (f"every model with n >= {HEADLINE_MIN_N} heads has degenerate output, so its speed figures are "
                       f"not scored: " + "; ".join(f"{name}: {m['quality']['reason']}" for name, m in wide.items()))
        return out

    def at(m, bs):
        return next((row for row in m["per_batch"] if row["batch_size"] == bs), None)

    def b1(item):
        row = at(item[1], 1)
        return row["speedup"] if row and row["speedup"] is not None else float("-inf")
    name, best = max(ok.items(), key=b1)
    out["model"] = name
    for bs in HEADLINE_BATCHES:
        row = at(best, bs)
        if row and row["speedup"] is not None:
            out.update({f"speedup_b{bs}": row["speedup"], f"tokens_per_forward_b{bs}": row["tokens_per_forward"],
                        f"unstable_b{bs}": row["speedup_spread"]["unstable"]})
    missing = [bs for bs in HEADLINE_BATCHES if out[f"speedup_b{bs}"] is None]
    if missing:
        out["note"] = f"decode.batch_sizes has no batch size {' or '.join(map(str, missing))}"
    return out


def bench_study(cfg, device="cpu"):
    """`mtp bench decode`: bench every trained model of the study with n > 1 -> one summary dict.

    -> {headline figures (see headline()), "models": {"<dataset>/<size>-n<n>": summary()},
        "skipped": [models without a checkpoint]}.
    """
    from mtp import checkpoint, config
    models, skipped = {}, []
    for entry in config.models(cfg):
        name = entry.name
        if entry.n_heads == 1:
            continue
        if not checkpoint.is_valid(Path(entry.dir) / checkpoint.MODEL_FILE):
            skipped.append(name)
            continue
        models[name] = summary(bench_model(cfg, entry, device)[0])
    if not models:
        raise UserError("bench decode: no trained model with n > 1 in this study's results; train one first "
                        "(snakemake ... or `mtp train`)")
    return {**headline(models), "models": models, "skipped": skipped}


def run(args):
    from mtp.stages.harness import model_from_args, model_run, save_result
    cfg, entry = model_from_args(args)
    with model_run(cfg, entry, "decode") as run:
        result, payload = bench_model(cfg, entry, args.device)
        run.tags({"mtp.train_run_id": payload.get("train_run_id", "")})
        run.params({"decode": cfg["decode"], "draft_tokens_used": result["draft_tokens"], "device": args.device,
                    "threads": torch.get_num_threads()})
        save_result(run, entry, "decode", result)
    name = entry.name
    for row in result["per_batch"]:
        line = f"batch {row['batch_size']}: AR {row['ar']['tokens_per_s']:.1f} tok/s"
        if row["spec"]:
            s = row["speedup_spread"]
            line += (f", speculative {row['spec']['tokens_per_s']:.1f} tok/s, speed-up {row['speedup']:.2f}x "
                     f"(rounds {s['min']:.2f}-{s['max']:.2f}{', UNSTABLE' if s['unstable'] else ''}), "
                     f"{row['tokens_per_forward']:.2f} tokens/forward, lossless {row['lossless']}")
        print(line)
    for x in result["tokens_per_forward_by_k"]:
        if x["tokens_per_forward"] is not None:
                print(f"k={x['k']}: {x['tokens_per_forward']:.2f} tokens/forward (batch 1, untimed)")
    q = result["quality"]
    if q["dropped"]:
        print(f"{name}: {q['degenerate_prompts']} of {q['prompts']} prompts dropped from the speed figures: "
              + "; ".join(f"prompt {d['prompt']}: {d['why']}" for d in q["dropped"]))
    if q["degenerate"]:
        print(f"{name}: DEGENERATE OUTPUT, speed figures not scored: {q['reason']}")
    if not result["speculative"]:
        print(f"{name}: {result['note']}")
