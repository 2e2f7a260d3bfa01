"""Speculative decoding, native and inside vLLM (Tables S2/S3 analogue): one table of runs (decode.json and
vllm.json, with vLLM's ngram and draft-model baselines) and the claims on tokens per forward, the
byte-level gain and losslessness.

Prompts whose greedy continuation is degenerate (mtp.measure: a loop, few distinct tokens) were dropped by the
stages from every speed figure; the table's "dropped" column says how many per file. Speed figures (tokens per
forward, speed-ups) are evidence only from a file whose top-level "quality" (mtp.measure.output_quality) is not
degenerate (enough prompts kept), otherwise "no data: degenerate output (reason)"; a speed-up only with its
per-round spread ("speedup_spread", mtp.measure.ratio): unstable -> "no verdict". Tokens per forward grow with
heads: judged per model over k = 1..n-1 drafted tokens, on per-prompt counts (decode.json
"tokens_per_forward_by_k", vllm.json our heads' "per_prompt"), by paired bootstrap over prompts (mtp.paired).
"""
from mtp.paired import paired_bootstrap, sign
from mtp.report.study import num, order, output_check, result_files, speedup_spread
from mtp.report.tables import fmt
from mtp.report.verdicts import (CONTRADICTED, DEGENERATE, INCONCLUSIVE, NO_DATA, NO_VERDICT, NOT_AT_SCALE,
                                 REPRODUCED, claim, runs_text, unstable_verdict)
from mtp.report.vllm import crosschecks, heads_per_prompt, vllm_runs

# Paper, Table S2: tokens per forward rise with heads used (7B code: 1 -> 3.50 at 4 heads). Each step from k to
# k+1 drafted tokens is judged by its 95% paired-bootstrap interval over prompts (mtp.paired), no fixed margin.
# No paper number: below 1.05 tokens per forward (5% of drafts accepted) the heads do not draft at all.
TPF_NO_ACCEPTANCE = 1.05
# Speed-ups: mtp.measure.UNSTABLE_SPREAD (0.25): a ratio whose per-round (max - min) / median exceeds it
# gives no verdict.
COUNTED = "self-speculative, untimed"  # native tokens per forward at every k: each kept prompt alone, batch 1

PAPER_TPF = ("7B code, 4 heads: 3.50 tokens/forward, 3.05x speed-up (Wikipedia: 3.12, 2.74x), rising with heads "
             "used (Table S2)")
PAPER_BYTES = "byte-level n=8: 7.04 tokens/forward, 6.39x speed-up, vs 3.50 / 3.05x for BPE n=4 (Table S2)"
PAPER_LOSSLESS = "self-speculative output identical to greedy decoding (Section 3.2)"


def tpf_steps(models):
    """{label: {k: [(tokens, forwards) per prompt]}} -> {label: {"points": [(k, pooled tokens / forwards)],
    "steps": [(k, next k, paired-bootstrap interval of tpf(next k) - tpf(k) over prompts, or None)]}} of the
    models counted at two k or more (mtp.paired: (hits, count) pairs are pooled; the same prompts at every k)."""
    out = {}
    for label, by_k in models.items():
        ks = sorted(k for k, pairs in by_k.items() if pairs and sum(f for _, f in pairs) > 0)
        if len(ks) < 2:
            continue
        points = [(k, sum(t for t, _ in by_k[k]) / sum(f for _, f in by_k[k])) for k in ks]
        steps = [(a, b, paired_bootstrap(by_k[b], by_k[a]) if len(by_k[a]) == len(by_k[b]) else None)
                 for a, b in zip(ks, ks[1:])]
        out[label] = {"points": points, "steps": steps}
    return out


def verdict_tokens_per_forward_grow(models, no_acceptance=TPF_NO_ACCEPTANCE):
    """models: {label: {k: [(tokens, forwards) per prompt]}}, one per model and engine: k drafted tokens (heads used
    - 1) from 1 to n-1, each prompt's tokens and decode forwards counted on the same kept prompts at every k. For
    each step from one k to the next of each model: the 95% paired-bootstrap interval over prompts of
    tpf(k+1) - tpf(k), tpf = pooled tokens / forwards (mtp.paired). Reproduced when every step's interval lies
    above 0; contradicted when any step's interval lies below 0; inconclusive otherwise (the steps whose interval
    includes 0 named). Before those: no data without a model counted at two k or more; not at this scale when no
    tpf exceeds `no_acceptance` (1.05: drafts are almost never accepted)."""
    seqs = tpf_steps(models)
    if not seqs:
        return NO_DATA
    if max(t for s in seqs.values() for _, t in s["points"]) <= no_acceptance:
        return NOT_AT_SCALE
    steps = [(label, a, b, ci) for label, s in seqs.items() for a, b, ci in s["steps"]]
    if any(sign(ci) == -1 for *_, ci in steps):
        return CONTRADICTED
    if all(sign(ci) == 1 for *_, ci in steps):
        return REPRODUCED
    open_ = [f"{label} k={a}->{b}: " + (f"{ci['level']:.0%} CI [{ci['lo']:+.3f}, {ci['hi']:+.3f}]" if ci else
                                         "no interval (prompts differ)")
             for label, a, b, ci in steps if sign(ci) != 1]
    return f"{INCONCLUSIVE} ({'; '.join(open_)} include{'s' if len(open_) == 1 else ''} 0)"


def verdict_byte_level_gain_largest(byte_speedup, best_other_speedup, spreads=()):
    """Reproduced when the byte-level n>=8 model's self-speculative speed-up is larger than every
    other code model's; not at this scale when no model speeds decoding up at all (both <= 1);
    contradicted otherwise; no data without both numbers. spreads: the speed-ups' timing spreads
    ({"spread", "unstable"} of mtp.measure.ratio, or None where the file has none): no verdict when
    either is unstable or has no spread."""
    if byte_speedup is None or best_other_speedup is None:
        return NO_DATA
    if any(s is None for s in spreads):
        return f"{NO_VERDICT}: speed-up without a timing spread ({result_files()['decode']} predates interleaved timing)"
    bad = [s["spread"] for s in spreads if s["unstable"]]
    if bad:
        return unstable_verdict(max(bad))
    if max(byte_speedup, best_other_speedup) <= 1.0:
        return NOT_AT_SCALE
    return REPRODUCED if byte_speedup > best_other_speedup else CONTRADICTED


def verdict_lossless(flags):
    """flags: one per native speculative run (output == greedy) and per vLLM model (its cross-check against
    native greedy). Reproduced when every flag is true; contradicted when any is false; no data without one."""
    flags = [f for f in flags if f is not None]
    if not flags:
        return NO_DATA
    return REPRODUCED if all(flags) else CONTRADICTED


# ---- rows

def _rates(x):
    return " ".join("-" if a is None else f"{a:.2f}" for a in x) if isinstance(x, list) else None


def _spec_row(engine, r, batch_size, method, k, tokens_per_s, speedup, tokens_per_forward, rates=None,
              lossless=None, spread=None, output=None):
    """One row of the speculative table. Where `output` is not "ok" (degenerate, or unchecked) the speed-up and
    tokens per forward cells hold the reason instead of numbers: no claim reads them. An unstable speed-up
    keeps its number, with its spread and timing "unstable: no verdict"."""
    heads = k + 1 if isinstance(k, int) and method in ("autoregressive", "self-speculative", COUNTED, "none",
                                                       "mtp") else None
    if output is not None and output != "ok":
        short = DEGENERATE if output.startswith(DEGENERATE) else "no data: output not checked"
        speedup = tokens_per_forward = short
    timing = None
    if spread is not None:
        timing = "unstable: no verdict" if spread["unstable"] else "stable"
    return {"engine": engine, "dataset": r.dataset, "size": r.slot, "n": r.n_heads, "batch_size": batch_size,
            "method": method, "draft_tokens": k, "heads_used": heads, "tokens_per_s": tokens_per_s, "speedup": speedup,
            "speedup_min": spread and spread["min"], "speedup_max": spread and spread["max"],
            "spread": spread and spread["spread"], "timing": timing,
            "tokens_per_forward": tokens_per_forward, "accept_rate_per_pos": _rates(rates), "lossless": lossless,
            "output": output}


def _native_rows(r):
    """r's decode.json: per batch size, the autoregressive run and the self-speculative one."""
    rows = []
    d = r.results["decode"]
    if d is None:
        return rows
    out = output_check(r, "decode")
    for b in d.per_batch:
        ar, sp, bs = b.ar, b.spec, b.batch_size
        rows.append(_spec_row("native", r, bs, "autoregressive", 0, num(ar.tokens_per_s) if ar else None, 1.0, 1.0,
                              output=out))
        if sp:
            k = sp.draft_tokens if sp.draft_tokens is not None else d.draft_tokens
            tpf = b.tokens_per_forward if b.tokens_per_forward is not None else sp.tokens_per_forward
            rows.append(_spec_row("native", r, bs, "self-speculative", k, num(sp.tokens_per_s), num(b.speedup),
                                  num(tpf), sp.accept_rate_per_pos, b.lossless, speedup_spread(b), out))
    for x in d.tokens_per_forward_by_k:  # every k, each kept prompt alone
        rows.append(_spec_row("native", r, 1, COUNTED, x.k, None, None, num(x.tokens_per_forward), output=out))
    if not d.per_batch:  # n = 1: its greedy output is checked, not timed (nothing to compare with)
        rows.append(_spec_row("native", r, None, "greedy, untimed", 0, None, None, None, output=out))
    s = d.sampling
    if s is not None and s.spec is not None:  # speculative sampling at temperature T
        t, bs = s.temperature, s.batch_size
        rows.append(_spec_row("native", r, bs, f"sampling T={t}", 0, num(s.ar.tokens_per_s) if s.ar else None,
                              1.0, 1.0, output=out))
        rows.append(_spec_row("native", r, bs, f"speculative sampling T={t}", s.spec.draft_tokens,
                              num(s.spec.tokens_per_s), num(s.speedup), num(s.tokens_per_forward),
                              s.spec.accept_rate_per_pos, None, speedup_spread(s), out))
    return [{**x, "dropped": dropped(d)} for x in rows]


def dropped(d):
    """'3 of 16 (prompts 2, 5, 9)': the prompts a decode.json / vllm.json left out of its speed figures because their
    greedy continuation is degenerate (mtp.measure); None without that record."""
    q = d.quality if d is not None else None
    if q is None or not isinstance(q.dropped, list) or num(q.prompts) is None:
        return None
    which = ", ".join(str(x.prompt) for x in q.dropped)
    return f"{len(q.dropped)} of {q.prompts}" + (f" (prompts {which})" if which else "")


def speculative_rows(records):
    """Native (decode.json) and vLLM (vllm.json) runs: one row per model, batch size and method; native tokens per
    forward at every k (method COUNTED, batch 1, untimed). heads_used = drafted tokens + 1 for our heads (none for
    the ngram and draft-model baselines). output: output_check of the file ("ok", or why its speed figures are not
    scored); dropped: the prompts whose degenerate continuation the file left out (dropped())."""
    rows = []
    for r in sorted(records, key=order):
        rows += _native_rows(r)
        out, v = output_check(r, "vllm"), r.results["vllm"]
        for x in vllm_runs(v):
            rows.append({**_spec_row("vllm", r, x["batch_size"], x["method"], x["k"], x["tokens_per_s"], x["speedup"],
                                     x["tokens_per_forward"], x["accept_rate_per_pos"], spread=x["spread"],
                                     output=out), "dropped": dropped(v)})
    return rows


# ---- claims

def smallest_batch(rows):
    sizes = [x["batch_size"] for x in rows if isinstance(x["batch_size"], int)]
    return min(sizes) if sizes else None


def model_label(x):
    return f"{x['dataset']}/{x['size']}-n{x['n']}"


def _excluded(rows):
    """{model: why} for the rows whose speed figures are not scored (output_check not "ok")."""
    return {f"{x['engine']} {model_label(x)}": x["output"] for x in rows if x["output"] not in (None, "ok")}


def _excluded_text(excluded):
    return "; ".join(f"{m}: {why}" for m, why in sorted(excluded.items()))


def _no_data_verdict(excluded):
    """The verdict of a speed claim left without scoreable rows because of `excluded` (or plain no data)."""
    why = sorted(set(excluded.values()))
    if not why:
        return NO_DATA
    if all(w.startswith(DEGENERATE + " (") for w in why):
        return f"{DEGENERATE} (" + "; ".join(w[len(DEGENERATE) + 2:-1] for w in why) + ")"
    return "; ".join(why)


def tpf_by_k(records):
    """{label: {k: [(tokens, forwards) per kept prompt]}}: per model, native (decode.json "tokens_per_forward_by_k")
    and vLLM (vllm.json, our heads' per-prompt counters), from files whose output is scored (output_check)."""
    out = {}
    for r in sorted(records, key=order):
        if output_check(r, "decode") == "ok":
            out[f"native {r.name}"] = {x.k: x.per_prompt for x in r.results["decode"].tokens_per_forward_by_k
                                          if isinstance(x.per_prompt, list)}
        if output_check(r, "vllm") == "ok":
            out[f"vllm {r.name}"] = heads_per_prompt(r.results["vllm"])
    return {label: by_k for label, by_k in out.items() if by_k}


def _tpf_text(label, seq):
    """'native code/micro-n4 (12 prompts): k=1 1.62, k=2 1.95 (+0.33, 95% CI [+0.25, +0.41]), ...'."""
    steps = {b: ci for _, b, ci in seq["steps"]}
    parts = []
    for k, t in seq["points"]:
        ci = steps.get(k)
        parts.append(f"k={k} {t:.2f}" + (f" ({ci['diff']:+.2f}, {ci['level']:.0%} CI [{ci['lo']:+.2f}, "
                                            f"{ci['hi']:+.2f}])" if ci else ""))
    prompts = next((ci["items"] for _, _, ci in seq["steps"] if ci), None)
    return f"{label}" + (f" ({prompts} prompts)" if prompts else "") + ": " + ", ".join(parts)


def claim_tpf(records):
    rows = speculative_rows(records)
    models = tpf_by_k(records)
    seqs = tpf_steps(models)
    excluded = _excluded(rows)
    ours = "; ".join(_tpf_text(label, seq) for label, seq in seqs.items()) or "-"
    drops = [f"{engine} {r.name} {dropped(r.results[key])}" for r in sorted(records, key=order)
             for engine, key in (("native", "decode"), ("vllm", "vllm"))
             if r.results[key] is not None and r.results[key].quality and r.results[key].quality.dropped]
    if drops:
        ours += f"; degenerate continuations dropped: {', '.join(drops)}"
    if excluded:
        ours += f"; not scored: {_excluded_text(excluded)}"
    return claim("Tokens per forward grow with the number of heads used", PAPER_TPF, ours,
                 verdict_tokens_per_forward_grow, (models,),
                 verdict=None if seqs or not excluded else _no_data_verdict(excluded),
                 runs=runs_text([r for r in records if r.n_heads > 2 and (r.results["decode"] or r.results["vllm"])]))


def _speed_text(x):
    """'<model> 2.10x, spread 1.9-2.3 (12%), 2.40 tokens/forward' of a self-speculative row."""
    timing = (f", spread {x['speedup_min']:.2f}-{x['speedup_max']:.2f} ({x['spread']:.0%})"
              + (" UNSTABLE" if x["timing"].startswith("unstable") else "")) if x["timing"] else ", no spread"
    return f"{model_label(x)} {x['speedup']:.2f}x{timing}, {fmt(x['tokens_per_forward'], 2)} tokens/forward"


def claim_bytes(records):
    rows = [x for x in speculative_rows(records) if x["engine"] == "native" and x["method"] == "self-speculative"]
    bs = smallest_batch(rows)
    kind = {(r.dataset, r.slot, r.n_heads): (r.task, r.tokenizer) for r in records}
    rows = [x for x in rows if x["batch_size"] == bs and kind[(x["dataset"], x["size"], x["n"])][0] == "code"]
    is_byte = [x for x in rows if kind[(x["dataset"], x["size"], x["n"])][1] == "byte" and x["n"] >= 8]
    byte = [x for x in is_byte if num(x["speedup"]) is not None]
    other = [x for x in rows if x not in is_byte and num(x["speedup"]) is not None]
    excluded = _excluded(rows)
    b = max(byte, key=lambda x: x["speedup"], default=None)
    o = max(other, key=lambda x: x["speedup"], default=None)
    ours = (f"byte level: {_speed_text(b) if b else 'no scoreable model with n >= 8'}; "
            f"best other code model: {_speed_text(o) if o else '-'} (batch {bs})")
    if excluded:
        ours += f"; not scored: {_excluded_text(excluded)}"
    verdict = None
    if excluded and (b is None and is_byte or o is None):
        verdict = _no_data_verdict(excluded)
    spreads = [None if x["timing"] is None else {"spread": x["spread"], "unstable": x["timing"] != "stable"}
               for x in (b, o) if x]
    return claim("Byte-level n=8 gives the largest speculative gain", PAPER_BYTES, ours,
                 verdict_byte_level_gain_largest, (b and b["speedup"], o and o["speedup"], spreads), verdict,
                 runs=runs_text([r for r in records for x in (b, o) if x and model_label(x) == r.name]))


def claim_lossless(records):
    rows = [x for x in speculative_rows(records) if x["method"] == "self-speculative" and x["lossless"] is not None]
    bad = [f"{model_label(x)} batch {x['batch_size']}" for x in rows if not x["lossless"]]
    checks = crosschecks(records)
    ours = []
    if rows:
        ours.append(f"{len(rows) - len(bad)} of {len(rows)} native runs identical to greedy"
                    + (f" (differs: {', '.join(bad)})" if bad else ""))
    if checks:
        ours.append(f"{sum(checks)} of {len(checks)} vLLM models match native greedy in every configuration")
    return claim("Self-speculative decoding is lossless", PAPER_LOSSLESS, "; ".join(ours) or "-", verdict_lossless,
                 ([x["lossless"] for x in rows] + checks,),
                 runs=runs_text([r for r in records if r.n_heads > 1 and (r.results["decode"] or r.results["vllm"])]))
