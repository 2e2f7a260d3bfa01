"""`mtp vllm` (rule time_vllm): the exported model served by vLLM, with and without speculation.

One `LLM()` per configuration, all alive side by side (mtp/serving/timing.py: started two at a time,
generation timed in interleaved rounds):
  nospec     trunk + head 1 only (`mtp_serve_heads: 1`: the plain Llama model), no speculation
  heads_k{k} our heads: target serves heads 1..k+1, drafter (medusa slot) drafts k tokens, for each k of
             vllm.draft_tokens (all: every k = 1..n-1, each clamped to n-1)
and the baselines of mtp/serving/baselines.py the config turns on, each on the nospec target:
  ngram      vLLM's prompt-lookup drafter
  draft      vLLM's `draft_model` drafter: the sweep's smallest n=1 model of the same dataset with at
             most a quarter of the target's parameters (mtp.config.draft_model_for); none: a note says why
A model with n = 1 gets the baselines only.

Prompts, lengths and stopping are the native decode stage's (mtp/decoding/timing.py: val_prompts,
decode.num_prompts / prompt_len / max_new_tokens, no stop at eod): token ids in, exactly
max_new_tokens out (ignore_eos). At batch size B the prompts go in consecutive batches of B
(one `generate` call each), as natively. Per batch size, after one untimed warm-up batch per engine,
every configuration decodes all measured prompts once per round, for vllm.repeats rounds (mtp.measure.interleaved).
Per configuration and batch size: tokens/s median, min and max over the rounds; for every configuration
but nospec `speedup` = median over rounds of (its tokens/s / nospec's tokens/s in the same round) and
`speedup_spread` = {min, max, spread, unstable} of those ratios (mtp.measure.ratio: unstable when
(max - min) / median > 0.25, no verdict is drawn from it); from the speculative counters summed over the
timed rounds: acceptance rate (accepted / drafted), mean acceptance length (1 + accepted / drafts:
tokens per target forward) and the acceptance rate per draft position (accepted at position j / drafts).
Kept prompts: first each prompt's native greedy continuation (mtp.decoding.engine, head 1, batch 1) is checked
(mtp.measure.output_quality); prompts whose continuation is degenerate (a loop, few distinct tokens) are dropped
and every engine is run, timed and counted on the kept prompts only. `quality` records which prompts were kept,
which dropped and why; fewer than half kept: the output is degenerate, no speed figure of it is scored, and every
prompt is measured (quality["measured"]: diagnostics, and the cross-checks below still run).

Cross-checks (a mismatch fails the stage with a diff; no vllm.json is written then):
- every configuration's output, at every batch size, equals native greedy decoding of head 1
  (mtp.decoding.engine.decode with draft_tokens=0, batch 1);
- our heads at batch 1, per prompt: vLLM's num_drafts, num_draft_tokens, num_accepted_tokens
  and num_accepted_tokens_per_pos equal mtp.decoding.engine.acceptance_counts on the same prompts.
  For these to be comparable the native engine continues past max_tokens exactly as vLLM does:
  a decode forward runs only while the prompt has fewer than max_new_tokens new tokens; that
  forward verifies its full block of k drafts even when fewer than k+1 tokens are still wanted,
  and drafts it accepts past max_new_tokens count as accepted though dropped from the output;
  no forward runs after max_new_tokens is reached, so the drafts proposed by the last forward
  (and the prefill's drafts of a 1-token request) are never verified nor counted; the prefill
  is not a draft step. vLLM's max_model_len is set so that no block is narrowed near the end.
  These per-prompt counters ("per_prompt" of each heads_k configuration) give each prompt's tokens per
  forward, num_drafts + num_accepted_tokens over num_drafts: the report compares k with k+1 over prompts.

Like for like, every configuration runs with the same engine settings: float32 (as the native
check), no prefix caching (repeats must not reuse the prompt's KV), no detokenization (token ids
only, like the native timer) and no async scheduling (vLLM 0.32 disables it for the medusa and
ngram drafters; left on, it would speed up nospec and draft only).
Each engine starts an engine-core process and a worker process: all are shut down when the stage
ends (also on errors and on SIGTERM through tracking.child_run), and they die with their parent even
when the stage is SIGKILLed (mtp.serving.plugin.register sets PR_SET_PDEATHSIG in them), so no vLLM
process outlives the stage. The `mtp` console script guards `main()` with
`if __name__ == "__main__"`, as vLLM's spawn start method needs (vLLM 0.32 forces spawn on CPU).
"""
import os
from pathlib import Path

from mtp import UserError
from mtp.serving import baselines as vllm_baselines
from mtp import measure as M
from mtp.serving import timing as T
from mtp.serving.plugin import DIE_WITH_PARENT
from mtp.decoding.engine import COUNTERS  # noqa: F401 (the counters compared with the native engine)


# ---------------------------------------------------------------- vLLM set-up


def import_vllm():
    """-> the vllm module with our plugin registered, or a UserError saying how to install it."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as e:
        raise UserError(f"vLLM is not installed ({e}); install it with pip install -e '.[cpu]' "
                        f"(or '.[cuda]' on CUDA machines)") from None
    from importlib.metadata import entry_points
    if not any(ep.value == "mtp.serving.plugin:register" for ep in entry_points(group="vllm.general_plugins")):
        raise UserError("the mtp vLLM plugin entry point is not installed (vLLM's worker processes need it); "
                        "reinstall with pip install -e '.[cpu]'")
    from mtp.serving.plugin import register
    register()
    os.environ[DIE_WITH_PARENT] = "1"  # read by register() inside vLLM's processes
    removed = T.clear_blas_threads()  # vLLM sets its worker's threads itself (mtp/serving/timing.py)
    if removed:
        print(f"vLLM workers set their own thread counts; not passing on {removed}", flush=True)
    return vllm


def check_head_dim(model_cfg, where):
    """vLLM's CPU attention kernels support a fixed list of head sizes; say so before start-up fails."""
    from vllm.platforms import current_platform
    if not current_platform.is_cpu():
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
    hs, ok = model_cfg.dim // model_cfg.n_attn_heads, CPUAttentionBackend.get_supported_head_sizes()
    if hs not in ok:
        raise UserError(f"{where}: head_dim {hs} (dim {model_cfg.dim} / {model_cfg.n_attn_heads} attention heads) "
                        f"is not supported by vLLM's CPU attention (supported: {ok}); use a size preset whose "
                        f"dim / n_attn_heads is one of these")


def ensure_exported(model_dir, drafter):
    """Export <model_dir>/hf (and hf-drafter when `drafter`: n > 1 and the head type has one) unless present and
    newer than the checkpoint."""
    from mtp.checkpoint import MODEL_FILE
    from mtp.formats.export import export
    model_dir = Path(model_dir)
    ckpt = model_dir / MODEL_FILE
    if not ckpt.exists():
        raise UserError(f"{ckpt}: checkpoint not found (train the model first)")
    out = {"hf": model_dir / "hf", "drafter": model_dir / "hf-drafter" if drafter else None}
    confs = [p / "config.json" for p in out.values() if p]
    if all(c.exists() and c.stat().st_mtime >= ckpt.stat().st_mtime for c in confs):
        return {k: p and str(p) for k, p in out.items()}
    return export(model_dir)


# ---------------------------------------------------------------- measuring


def configurations(served, exported, vc, ks, draft_hf):
    """[(name, k, hf_overrides, speculative_config)] in run order; nospec first (the reference). served: the head
    type's HeadBehaviour.served."""
    base = served(exported, 0)[0]
    out = [("nospec", 0, base, None)]
    for k in ks:
        out.append((f"heads_k{k}", k, *served(exported, k)))
    kb = vc["num_speculative_tokens_baselines"]
    for b in vllm_baselines.enabled(vc):  # vLLM's own drafters (mtp/serving/baselines.py)
        spec = b.make_config(vc, kb, draft_hf)
        if spec:
            out.append((b.name, spec.get("num_speculative_tokens", kb), base, spec))
    return out


def measure(cfg, entry, batch_sizes, repeats, ks=None):
    """Every configuration of one model of the sweep on the measured prompts, cross-checked against the native
    engine.

    ks: our-heads draft lengths (default 1..n-1). -> the vllm.json dict; result["crosscheck"]["problems"]
    lists the mismatches (the caller fails on them).
    """
    from mtp.decoding import engine as D

    vllm = import_vllm()
    s = prepare(cfg, entry, ks, max(batch_sizes))
    model, max_new, ks = s["model"], s["max_new"], s["ks"]
    # the measured prompts: those whose native greedy continuation (head 1, batch 1) is not degenerate (mtp.measure)
    greedy = D.decode(model, s["prompts"], max_new, None, 0, batch_size=1)[0]
    quality = M.output_quality(greedy)
    prompts, native = [s["prompts"][i] for i in quality["measured"]], [greedy[i] for i in quality["measured"]]
    confs = configurations(model.behaviour.served, s["exported"], cfg["vllm"], ks, s["draft_hf"])
    runs = run_engines(vllm, entry.name, confs, s["engine_args"], prompts, max_new,
                       batch_sizes, repeats)

    # the cross-checks: native greedy (above) and native acceptance counts at batch 1
    native_counts = {k: D.acceptance_counts(model, prompts, max_new, None, k) for k in ks}
    problems = crosscheck(native, native_counts, runs)
    dc, draft = cfg["decode"], s["draft"]
    result = {
        "dataset": entry.dataset, "size": entry.size, "n": model.cfg.n_heads,
        "train_run_id": s["payload"].get("train_run_id"), "vllm_version": vllm.__version__, "device": _device(),
        "dtype": "float32", "enforce_eager": cfg["vllm"]["enforce_eager"], "num_prompts": len(s["prompts"]),
        "timed_prompts": len(prompts), "prompts": dc["prompts"], "prompt_len": max(map(len, s["prompts"])),
        "max_new_tokens": max_new, "batch_sizes": batch_sizes, "repeats": repeats,
        "timing": "interleaved rounds, every engine alive side by side (mtp/serving/timing.py)",
        "max_model_len": s["max_model_len"], "draft_model": draft.name if draft else None,
        "note": s["note"].strip(), "export": s["exported"], "quality": quality, "configs": runs,
        "crosscheck": {"ok": not problems, "problems": problems, "native_greedy": native,
                       "native_counts": {str(k): [{c: x[c] for c in COUNTERS} for x in v]
                                         for k, v in native_counts.items()}},
    }
    result["metrics"] = flat_metrics(result)
    return result


def prepare(cfg, entry, ks, max_batch):
    """Load and check the model (and the draft model), export both, pick the prompts.
    -> {model, payload, ks, exported, draft (its ModelSpec), draft_hf, note, prompts, max_new, max_model_len,
    engine_args}."""
    from mtp import checkpoint
    from mtp.decoding import engine as D
    from mtp.decoding import timing as DT
    from mtp.formats.export import refuse_export
    vc, dc = cfg["vllm"], cfg["decode"]
    name = entry.name
    model, payload = checkpoint.load_model(entry.dir)
    n = model.cfg.n_heads
    refuse_export(model.cfg, name)
    check_head_dim(model.cfg, name)
    ks = list(range(1, n)) if ks is None else [k for k in ks if 1 <= k < n]
    exported = ensure_exported(entry.dir, model.behaviour.writes_drafter(n))
    draft, note = _draft_model(cfg, entry, vc)
    if draft:
        draft_model, _ = checkpoint.load_model(draft.dir)
        check_head_dim(draft_model.cfg, draft.name)
        if draft_model.cfg.vocab_size != model.cfg.vocab_size:
            raise UserError(f"draft model {draft.name}: vocab {draft_model.cfg.vocab_size} != "
                            f"{model.cfg.vocab_size} of {name}")
    draft_hf = ensure_exported(draft.dir, False)["hf"] if draft else None
    if n == 1:
        note = "n=1: one head, nothing to draft; baselines only. " + note
    prompts = DT.study_prompts(cfg, payload["data_dir"])  # the native decode stage's prompts
    D.check_prompts(model, prompts)
    max_new = dc["max_new_tokens"]
    longest = max([*ks, vc["num_speculative_tokens_baselines"], 0])
    prompt_len = max(map(len, prompts))
    max_model_len = min(model.cfg.max_seq_len, prompt_len + max_new + longest + 16)
    if prompt_len + max_new > max_model_len:
        raise UserError(f"decode.prompt_len + decode.max_new_tokens = {prompt_len + max_new} exceeds "
                        f"{name}'s context (max_seq_len {model.cfg.max_seq_len})")
    args = T.engine_args(exported["hf"], model.cfg, max_model_len, max_batch, vc["enforce_eager"])
    return {"model": model, "payload": payload, "ks": ks, "exported": exported, "draft": draft, "draft_hf": draft_hf,
            "note": note,
            "prompts": prompts, "max_new": max_new, "max_model_len": max_model_len, "engine_args": args}


def run_engines(vllm, name, confs, base, prompts, max_new, batch_sizes, repeats):
    """Start every configuration's engine (T.start_all: two at a time, startup_s each one's own start-up while
    another starts beside it), keep them all alive, then time every batch size in interleaved rounds; each prompt
    decoded alone (per-prompt outputs and counters) is the first round at batch size 1 (an untimed pass where the
    study has no batch size 1).
    -> [{name, k, method, speculative_config, startup_s, per_prompt, per_batch}]."""
    gen = T.generator(vllm, max_new)
    with T.alive() as engines:
        T.start_all(vllm, engines, [(cname, dict(base, hf_overrides=overrides, speculative_config=spec))
                                    for cname, k, overrides, spec in confs],
                    log=lambda line: print(f"vllm {name}: {line}\n", end="", flush=True))  # one write a line
        runs = [{"name": cname, "k": k, "method": spec["method"] if spec else None, "speculative_config": spec,
                 "startup_s": engines[cname].startup_s,
                 "per_prompt": None if 1 in batch_sizes else T.decode_alone(engines[cname], gen, prompts),
                 "per_batch": []} for cname, k, _, spec in confs]
        for bs in batch_sizes:
            print(f"vllm {name}: timing batch size {bs}, {repeats} interleaved rounds ...", flush=True)
            rows = T.time_batch_size(engines, gen, prompts, bs, repeats)
            for r in runs:
                row = rows[r["name"]]
                r["per_prompt"] = row.pop("per_prompt", r["per_prompt"])
                r["per_batch"].append(row)
    return runs


def _draft_model(cfg, entry, vc):
    """-> (the draft model (mtp.config.draft_model_for) or None; a note saying why there is none)."""
    from mtp import config
    if not vc["draft_model"]:
        return None, "draft_model baseline off (vllm.draft_model: false)."
    draft = config.draft_model_for(cfg, entry)
    if draft is not None:
        return draft, ""
    ones = [m.name for m in config.models(cfg) if m.dataset == entry.dataset and m.n_heads == 1]
    return None, (f"no n=1 model of at most a quarter of {entry.name}'s parameters in the sweep "
                  f"(n=1 models of dataset {entry.dataset}: {', '.join(ones) or 'none'}): no draft_model baseline.")


def _device():
    from vllm.platforms import current_platform
    return current_platform.device_type


def crosscheck(native, native_counts, runs):
    """-> list of mismatch descriptions (empty: vLLM agrees with the native engine)."""
    problems = []

    def tokens(where, got):
        for i, (a, b) in enumerate(zip(native, got)):
            if a != b:
                j = next((t for t, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                problems.append(f"{where}, prompt {i}: outputs differ from native greedy at new token {j}: "
                                f"native {a[j:j + 8]} vs vLLM {b[j:j + 8]} (lengths {len(a)} vs {len(b)})")
        if len(got) != len(native):
            problems.append(f"{where}: {len(got)} outputs for {len(native)} prompts")

    for r in runs:
        tokens(f"{r['name']} each prompt alone", [p["tokens"] for p in r["per_prompt"]])
        for row in r["per_batch"]:
            tokens(f"{r['name']} batch {row['batch_size']}", row["outputs"])
        if r["name"].startswith("heads_k"):
            for i, (nat, got) in enumerate(zip(native_counts[r["k"]], r["per_prompt"])):
                a, b = {c: nat[c] for c in COUNTERS}, {c: got[c] for c in COUNTERS}
                if a != b:
                    problems.append(f"{r['name']} batch 1, prompt {i}: acceptance counts differ: native {a} vs vLLM {b}")
    return problems


def flat_metrics(result):
    """MLflow metrics with stable names: vllm_<config>_<what>_b<batch>."""
    out = {}
    for r in result["configs"]:
        out[f"vllm_{r['name']}_startup_s"] = r["startup_s"]
        for row in r["per_batch"]:
            b, p = row["batch_size"], f"vllm_{r['name']}"
            out[f"{p}_tokens_per_s_b{b}"] = row["tokens_per_s"]
            out[f"{p}_tokens_per_s_stdev_b{b}"] = row["tokens_per_s_stdev"]
            out[f"{p}_other_engines_cpu_s_b{b}"] = row.get("other_engines_cpu_s")
            if r["name"] != "nospec":
                out[f"{p}_speedup_b{b}"] = row["speedup"]
                out[f"{p}_speedup_spread_b{b}"] = row["speedup_spread"]["spread"]
                out[f"{p}_speedup_unstable_b{b}"] = float(row["speedup_spread"]["unstable"])
                out[f"{p}_accept_rate_b{b}"] = row["acceptance_rate"]
                out[f"{p}_mean_accept_len_b{b}"] = row["mean_acceptance_length"]
                for j, rate in enumerate(row["acceptance_rate_per_pos"], 1):
                    out[f"{p}_accept_rate_pos{j}_b{b}"] = rate
    out["vllm_crosscheck_ok"] = float(result["crosscheck"]["ok"])
    out["vllm_output_degenerate"] = float(result["quality"]["degenerate"])
    out["vllm_degenerate_prompts"] = result["quality"]["degenerate_prompts"]
    return out


def _fail_on_mismatch(result):
    problems = result["crosscheck"]["problems"]
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise UserError(f"vLLM disagrees with the native engine ({len(problems)} mismatches):\n  {shown}{more}")


# ---------------------------------------------------------------- the stage and the benchmark


def add_arguments(p):
    from mtp.args import add_config_arg, add_model_args
    add_config_arg(p)
    add_model_args(p)


def draft_ks(draft_tokens, n):
    """vllm.draft_tokens -> the k values of our heads to serve: None (every k = 1..n-1) for "all" or null, else
    each listed k clamped to n-1, once each, in order."""
    if draft_tokens is None or draft_tokens == "all":
        return None
    return sorted({min(k, int(n) - 1) for k in draft_tokens})


def run(args):
    from mtp.stages.harness import model_from_args, model_run, save_result
    cfg, entry = model_from_args(args)
    vc = cfg["vllm"]
    with model_run(cfg, entry, "vllm") as run_:
        run_.params({"vllm": vc, "decode.num_prompts": cfg["decode"]["num_prompts"],
                     "decode.prompt_len": cfg["decode"]["prompt_len"],
                     "decode.max_new_tokens": cfg["decode"]["max_new_tokens"]})
        result = measure(cfg, entry, vc["batch_sizes"], vc["repeats"], draft_ks(vc["draft_tokens"], entry.n_heads))
        run_.tags({"mtp.train_run_id": result["train_run_id"] or "", "mtp.vllm_version": result["vllm_version"]})
        run_.log(result["metrics"])  # before the cross-checks: a failed one keeps its figures in MLflow
        _fail_on_mismatch(result)
        path = save_result(run_, entry, "vllm", result, log=False)
    for r in result["configs"]:
        for row in r["per_batch"]:
            line = (f"{r['name']:>10} batch {row['batch_size']}: {row['tokens_per_s']:8.1f} tok/s "
                    f"({row['tokens_per_s_min']:.1f}-{row['tokens_per_s_max']:.1f})")
            if r["name"] != "nospec":
                sp = row["speedup_spread"]
                line += (f", speed-up {row['speedup']:.2f}x ({sp['min']:.2f}-{sp['max']:.2f}"
                         f"{', unstable: no verdict' if sp['unstable'] else ''})")
                if row["mean_acceptance_length"] is not None:
                    line += (f", acceptance {row['acceptance_rate']:.2f}, "
                             f"{row['mean_acceptance_length']:.2f} tokens/forward")
            print(line)
    if result["note"]:
        print(f"{entry.name}: {result['note']}")
    q = result["quality"]
    if q["dropped"]:
        print(f"{entry.name}: {q['degenerate_prompts']} of {q['prompts']} prompts dropped (degenerate "
              f"native greedy continuation): " + "; ".join(f"prompt {d['prompt']}: {d['why']}" for d in q["dropped"]))
    if q["degenerate"]:
        print(f"{entry.name}: {q['reason']}: speed figures are not scored")
    print(f"cross-checks against the native engine: ok; wrote {path}")
