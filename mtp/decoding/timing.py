"""Timing of the decoding engine (mtp/decoding/engine.py): autoregressive vs self-speculative greedy decoding in
interleaved rounds (mtp.measure), tokens per forward at every k, and the validation prompts the decode and vLLM
stages time on.

Counting (the engine's counts, tokens per forward and acceptance, are defined in mtp/decoding/engine.py):
- kept prompts: first each prompt's greedy continuation (head 1, untimed) is checked (mtp.measure.output_quality);
  prompts whose continuation is degenerate (a loop, few distinct tokens) are dropped, and every figure below is
  measured on the kept prompts only. Too few kept (mtp.measure.MIN_KEPT_FRACTION): the model's output is
  degenerate, its figures are not scored, and every prompt is measured (diagnostics, losslessness checked).
- tokens/s = output tokens (after truncation at eod / max_new_tokens, summed over prompts)
  / wall seconds of the whole generation (prefill included), per round; every configuration
  (AR and speculative at every batch size) runs once per round, `repeats` rounds (mtp.measure).
  Reported: median over rounds, min, max, all.
- speed-up = median over rounds of (speculative tokens/s / autoregressive tokens/s of the same
  round) at the same batch size; its spread (min, max) marks it unstable (mtp.measure).
- tokens per forward at every k = 1..n-1 (untimed): each kept prompt decoded alone (batch 1, greedy) drafting k
  tokens; per prompt [tokens, forwards] = (sum over its decode forwards of 1 + accepted drafts, its decode
  forwards), so that a paired bootstrap over prompts can compare two k (mtp.paired, pooled tokens / forwards).
- sampling (decode.sample_temperature T, at the first batch size): autoregressive sampling from head 1 vs
  speculative sampling (mtp.decoding.sampling, the same distribution), timed in the same rounds; their outputs differ
  by design (other random draws), so there is no lossless check, only speed-up and acceptance.
"""
import torch

from mtp import UserError, measure
from mtp.decoding.engine import acceptance_counts, check_draft_tokens, check_prompts, decode


def _sync(model):
    dev = next(model.parameters()).device
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(model, prompts, max_new_tokens, eod_id, batch_sizes, k, rounds, temperature=None):
    """Every configuration (AR, and speculative when k, at each batch size; sampled at `temperature` at the first
    batch size) timed in interleaved rounds (measure.interleaved, one untimed warm-up each) ->
    ({(kind, bs): seconds per round}, {(kind, bs): last (outputs, Stats)})."""
    last, configs = {}, {}
    runs = [(kind, kk, bs, 0.0) for bs in batch_sizes for kind, kk in (("ar", 0), ("spec", k))[:2 if k else 1]]
    if k and temperature:
        runs += [("ar_sample", 0, batch_sizes[0], temperature), ("spec_sample", k, batch_sizes[0], temperature)]
    for kind, kk, bs, t in runs:
        def call(key=(kind, bs), kk=kk, bs=bs, t=t):
            last[key] = decode(model, prompts, max_new_tokens, eod_id, kk, bs, temperature=t, seed=0)
        configs[(kind, bs)] = call
    sync = lambda: _sync(model)  # noqa: E731
    return measure.interleaved(configs, rounds, warmup=1, before=sync, after=sync), last


def _batch_row(bs, times, last, k, metrics):
    """One batch size's row of bench(): tokens/s per round, speed-up per round, lossless; fills metrics."""
    ar_out, ar_stats = last[("ar", bs)]
    row = {"batch_size": bs, "ar": {**measure.rate_summary(ar_stats.new_tokens, times[("ar", bs)]),
                                    **ar_stats.as_dict()}}
    metrics[f"decode_ar_tokens_per_s_b{bs}"] = row["ar"]["tokens_per_s"]
    row["spec"] = row["speedup"] = row["speedup_spread"] = row["tokens_per_forward"] = row["lossless"] = None
    if not k:
        return row
    sp_out, sp_stats = last[("spec", bs)]
    row["spec"] = {**measure.rate_summary(sp_stats.new_tokens, times[("spec", bs)]), **sp_stats.as_dict()}
    r = measure.ratio(row["spec"]["tokens_per_s_all"], row["ar"]["tokens_per_s_all"])
    row["speedup"] = r["median"]
    row["speedup_spread"] = {key: r[key] for key in ("min", "max", "spread", "unstable")}
    row["tokens_per_forward"] = sp_stats.tokens_per_forward
    row["lossless"] = sp_out == ar_out
    row["mismatched_prompts"] = sum(a != b for a, b in zip(sp_out, ar_out))
    metrics.update({f"decode_spec_tokens_per_s_b{bs}": row["spec"]["tokens_per_s"],
                    f"decode_speedup_b{bs}": row["speedup"], f"decode_speedup_unstable_b{bs}": float(r["unstable"]),
                    f"decode_tokens_per_forward_b{bs}": row["tokens_per_forward"],
                    f"decode_lossless_b{bs}": float(row["lossless"])})
    for j, rate in enumerate(sp_stats.accept_rate_per_pos, 1):
        metrics[f"decode_accept_rate_pos{j}_b{bs}"] = rate
    return row


def _sampling_row(bs, times, last, temperature, metrics):
    """Speculative vs autoregressive sampling at `temperature` and batch size bs; fills metrics."""
    (_, ar), (_, sp) = last[("ar_sample", bs)], last[("spec_sample", bs)]
    row = {"temperature": temperature, "batch_size": bs,
           "ar": {**measure.rate_summary(ar.new_tokens, times[("ar_sample", bs)]), **ar.as_dict()},
           "spec": {**measure.rate_summary(sp.new_tokens, times[("spec_sample", bs)]), **sp.as_dict()}}
    r = measure.ratio(row["spec"]["tokens_per_s_all"], row["ar"]["tokens_per_s_all"])
    row.update(speedup=r["median"], speedup_spread={key: r[key] for key in ("min", "max", "spread", "unstable")},
               tokens_per_forward=sp.tokens_per_forward)
    metrics.update({f"decode_sample_speedup_b{bs}": r["median"],
                    f"decode_sample_tokens_per_forward_b{bs}": sp.tokens_per_forward})
    return row


def bench(model, prompts, batch_sizes, max_new_tokens, repeats, draft_tokens=None, eod_id=None, temperature=None):
    """Check each prompt's greedy continuation, then, on the kept prompts, time autoregressive vs self-speculative
    greedy decoding at each batch size and count tokens per forward at every k (see the module docstring;
    degenerate output: on every prompt).

    All timed configurations run in `repeats` interleaved rounds (mtp.measure), after one untimed warm-up each.
    -> {"n", "draft_tokens", "speculative" (False for n=1: quality only, no timing, "per_batch" empty), "note",
        "num_prompts", "timed_prompts" (the measured ones: quality["measured"]),
        "quality": measure.output_quality of the greedy continuations (kept and dropped prompts, and why),
        "per_batch": [{"batch_size", "ar": {tokens_per_s (median over rounds), _min, _max, _all, ...},
                       "spec": {...} or None, "speedup" (median of per-round ratios),
                       "speedup_spread": {min, max, spread, unstable}, "tokens_per_forward",
                       "lossless": spec output == AR output}],
        "tokens_per_forward_by_k": [{"k", "tokens_per_forward", "per_prompt": [[tokens, forwards], ...]}],
        "metrics": flat {name: value} with stable names (decode_speedup_b1, decode_degenerate, ...)}.
    eod_id None: every prompt gets exactly max_new_tokens (comparable across models). temperature: also time
    sampling at it (result["sampling"], first batch size; None when off). n = 1 has nothing to compare its
    greedy speed with (the n > 1 model of its size times the same greedy decoding), so only its output quality
    is checked, at the first batch size, untimed.
    """
    if not prompts:
        raise UserError("decode: no prompts to time (num_prompts must be >= 1)")
    if repeats < 1:
        raise UserError(f"decode.repeats: {repeats} rounds; at least 1 is needed")
    check_prompts(model, prompts)
    n = model.cfg.n_heads
    k = check_draft_tokens(model, draft_tokens)
    model.eval()
    result = {"n": n, "draft_tokens": k, "speculative": k > 0, "max_new_tokens": max_new_tokens,
              "num_prompts": len(prompts), "repeats": repeats, "timing": "interleaved rounds" if k else None,
              "stop_at_eod": eod_id is not None,
              "threads": torch.get_num_threads(), "device": str(next(model.parameters()).device),
              "note": "" if k else "n=1: one head, nothing to draft; greedy output checked for quality, not timed",
              "per_batch": [], "tokens_per_forward_by_k": [], "sampling": None, "metrics": {}}
    metrics = result["metrics"]
    quality = _quality(result, decode(model, prompts, max_new_tokens, eod_id, 0, batch_sizes[0])[0])
    kept = [prompts[i] for i in quality["measured"]]
    result["timed_prompts"] = len(kept) if k else 0
    if not k:  # nothing to compare with: the greedy output's quality, untimed (the job can share the machine)
        return result
    result["tokens_per_forward_by_k"] = tokens_per_forward_by_k(model, kept, max_new_tokens, eod_id, range(1, n))
    for x in result["tokens_per_forward_by_k"]:
        metrics[f"decode_tokens_per_forward_k{x['k']}"] = x["tokens_per_forward"]
    times, last = _timed(model, kept, max_new_tokens, eod_id, batch_sizes, k, repeats, temperature)
    result["per_batch"] = [_batch_row(bs, times, last, k, metrics) for bs in batch_sizes]
    result["sampling"] = _sampling_row(batch_sizes[0], times, last, temperature, metrics) if temperature else None
    first = result["per_batch"][0]  # headline acceptance: the first configured batch size
    for j, rate in enumerate(first["spec"]["accept_rate_per_pos"], 1):
        metrics[f"decode_accept_rate_pos{j}"] = rate
    metrics["decode_tokens_per_forward"] = first["tokens_per_forward"]
    return result


def tokens_per_forward_by_k(model, prompts, max_new_tokens, eod_id, ks):
    """Each prompt decoded alone (batch 1, greedy, untimed) drafting k tokens, for each k of ks ->
    [{"k", "tokens_per_forward" (pooled: all tokens / all forwards), "per_prompt": [[tokens, forwards], ...]}]:
    tokens = forwards + accepted drafts (mtp.decoding.engine.acceptance_counts), prefill excluded."""
    out = []
    for k in ks:
        pairs = [[c["num_drafts"] + c["num_accepted_tokens"], c["num_drafts"]]
                 for c in acceptance_counts(model, prompts, max_new_tokens, eod_id, k)]
        tokens, forwards = sum(t for t, _ in pairs), sum(f for _, f in pairs)
        out.append({"k": k, "tokens_per_forward": tokens / forwards if forwards else None, "per_prompt": pairs})
    return out


def _quality(result, outputs):
    """result["quality"] (measure.output_quality of the greedy continuations) and its metrics -> the quality."""
    quality = result["quality"] = measure.output_quality(outputs)
    result["metrics"]["decode_distinct_tokens_min"] = min(quality["distinct_tokens"])
    result["metrics"]["decode_degenerate_prompts"] = quality["degenerate_prompts"]
    result["metrics"]["decode_degenerate"] = float(quality["degenerate"])
    return quality


# ---------------------------------------------------------------- prompts (the decode and vllm stages')


def study_prompts(cfg, data_dir):
    """The prompts of the decode and vLLM stages (decode.prompts): `val`, num_prompts windows of prompt_len tokens
    of the dataset's val split; `humaneval`, the first num_prompts HumanEval prompts (each its own length), encoded
    with the dataset's tokenizer; `humaneval-templated`, the same rendered with eval.code.prompt_templates.humaneval
    as the code benchmark gives them (an instruct model's chat: the text it writes is then the code it is scored on)."""
    from pathlib import Path

    from mtp.data import TokenData
    dc = cfg["decode"]
    if dc["prompts"] == "val":
        return val_prompts(TokenData(data_dir, "val", verify=True), dc["num_prompts"], dc["prompt_len"])
    from mtp.evals.code import humaneval_problems, render_prompt
    from mtp.tokenizer import Tokenizer
    tok = Tokenizer.load(Path(data_dir) / "tokenizer.json")
    template = "{prompt}"
    if dc["prompts"] == "humaneval-templated":
        template = cfg["eval"]["code"]["prompt_templates"].get("humaneval", template)
    return [tok.encode(render_prompt(p, template)) for p in humaneval_problems()[:dc["num_prompts"]]]


def val_prompts(data, num_prompts, prompt_len):
    """num_prompts windows of prompt_len tokens, evenly spaced over the split (deterministic)."""
    N = len(data.tokens)
    if N < prompt_len:
        raise UserError(f"decode.prompt_len: {prompt_len} tokens but the val split holds only {N}; "
                        f"lower prompt_len or add validation data")
    last = N - prompt_len
    starts = [round(i * last / max(num_prompts - 1, 1)) for i in range(num_prompts)]
    return data.windows(starts, prompt_len).tolist()
