"""`mtp report`: tables, plots and the claims check of the whole study (rule build_report).

Reads every per-model result under <results>/models/<dataset>/<size>-n<n>/ (metrics.json,
decode.json, vllm.json, eval_code.json, eval_polynomial.json, eval_induction.json) and the
optional train benchmark <results>/bench/train.json (`mtp bench train > results/bench/train.json`),
and writes the fixed set of files OUTPUTS under <results>/report/ (a section without data says
"no data" inside its files, so the set never changes). Everything in the report folder is then
logged to the study's MLflow parent run.

Sections (paper analogue): training loss curves and final validation loss by size x n (Fig. 3);
cost of training by n (Fig. 2 / Table S5); speculative decoding, native and inside vLLM, with
vLLM's ngram and draft-model baselines (Tables S2/S3); code benchmarks pass@k (Table S7);
polynomial arithmetic by number of operations m (Fig. 8); induction (Fig. 7); the claims table.

Claims are judged by the verdict_* functions below: pure, one explicit rule each (its docstring),
applied to numbers extracted from the results; no verdict is written by hand.

vllm.json (mtp/vllm_stage.py) is read through its "configs": nospec, heads_k<k> (our heads drafting
k tokens), ngram and draft, each with "per_batch" rows (tokens_per_s, speedup vs nospec,
mean_acceptance_length = tokens per forward, acceptance_rate_per_pos) and its "crosscheck" against the
native engine. Missing keys leave blanks; a missing file is named in its section.
"""
import csv
import html
import io
import math
import statistics
from pathlib import Path

from mtp import UserError
from mtp.io import atomic_path, write_text

REPRODUCED, NOT_AT_SCALE, CONTRADICTED, NO_DATA = "reproduced", "not at this scale", "contradicted", "no data"

# The fixed set of files written under <results>/report/ (workflow/rules/report.smk declares the same).
TABLES = ("status", "val_loss", "cost", "speculative", "code", "polynomial", "induction", "claims")
FIGURES = ("loss_curves", "val_loss", "cost", "speculative", "code", "polynomial", "induction")
OUTPUTS = ("index.html", *[f"{f}.png" for f in FIGURES], *[f"{t}.{ext}" for t in TABLES for ext in ("md", "csv")])

RESULT_FILES = {"metrics": "metrics.json", "decode": "decode.json", "vllm": "vllm.json", "code": "eval_code.json",
                "polynomial": "eval_polynomial.json", "induction": "eval_induction.json"}
WRITER = {"metrics": "mtp train", "decode": "mtp decode", "vllm": "mtp vllm", "code": "mtp eval code",
          "polynomial": "mtp eval polynomial", "induction": "mtp eval induction"}
BENCH_TRAIN = "bench/train.json"

# Thresholds of the verdict rules (see each rule's docstring).
MEMORY_FLAT_MAX = 1.25  # peak memory at the largest n / at n=1
OVERHEAD_MAX = 1.30  # the paper's 1.07-1.22 plus timing noise
OVERHEAD_MIN = 0.8  # below: timing noise (a shared machine), not a measurement
OVERHEAD_FLOP_SLACK = 1.15  # measured / FLOP-predicted ratio still "explained by the extra unembeddings"
TPF_MIN_GAIN = 0.01  # tokens per forward must rise by more than this per extra head
TPF_NO_ACCEPTANCE = 1.05  # below this, drafts are (almost) never accepted
SMALL_MAX_PARAMS = 1.0e9  # "small": below the paper's 1.3B break-even point
INDUCTION_MAX_PARAMS = 35e6  # the paper's <= 30M (our 30M preset has ~31.6M non-embedding parameters)
MARGIN = {"bpb": 0.002, "pass": 0.0, "induction": 0.01, "polynomial": 0.01}

PAPER = {
    "memory": "peak memory O(V+d) instead of O(nV+d): independent of n (Section 2, Fig. 2)",
    "overhead": "training time n=4 vs n=1: 1.07-1.22x (Table S5)",
    "tpf": "7B code, 4 heads: 3.50 tokens/forward, 3.05x speed-up (Wikipedia: 3.12, 2.74x), rising with heads "
           "used (Table S2)",
    "bytes": "byte-level n=8: 7.04 tokens/forward, 6.39x speed-up, vs 3.50 / 3.05x for BPE n=4 (Table S2)",
    "small_loss": "n=4 hurts at 0.3B-0.6B, breaks even near 1.3B (Fig. 3; no loss number given)",
    "small_pass": "n=4 hurts MBPP/HumanEval at 0.3B-0.6B, breaks even near 1.3B; 13B: +17% MBPP@1, +12% "
                  "HumanEval@1 (Fig. 3)",
    "induction": "n=2 beats n=1 clearly at <= 30M parameters (Fig. 7)",
    "polynomial": "n>1 beats n=1 at every number of operations m, in and out of domain (Fig. 8)",
    "lossless": "self-speculative output identical to greedy decoding (Section 3.2)",
}


# ---------------------------------------------------------------- verdict rules (pure)

def verdict_memory_flat(ratio, limit=MEMORY_FLAT_MAX):
    """Reproduced when peak memory at the largest n is at most `limit` (1.25) times that at n=1;
    contradicted when above; no data without a ratio."""
    if ratio is None:
        return NO_DATA
    return REPRODUCED if ratio <= limit else CONTRADICTED


def verdict_training_overhead(ratio, predicted=None, limit=OVERHEAD_MAX, slack=OVERHEAD_FLOP_SLACK,
                              floor=OVERHEAD_MIN):
    """Reproduced when step time at n=4 (else the largest n) over n=1 is at most `limit` (1.30);
    not at this scale when above but within `slack` (1.15x) of the FLOP-count prediction (the extra
    unembeddings weigh more at small width and large vocabulary than in the paper's 7B models);
    contradicted otherwise; no data without a ratio or with one below `floor` (0.8: at matched
    parameters n heads only add work, so a faster n>1 step is timing noise, not evidence)."""
    if ratio is None or ratio < floor:
        return NO_DATA
    if ratio <= limit:
        return REPRODUCED
    if predicted is not None and ratio <= predicted * slack:
        return NOT_AT_SCALE
    return CONTRADICTED


def verdict_tokens_per_forward_grow(sequences, min_gain=TPF_MIN_GAIN, no_acceptance=TPF_NO_ACCEPTANCE):
    """Each sequence is [(heads used, tokens per forward), ...] of one model (vLLM, k = 1..n-1) or one
    size (native, one model per n). Reproduced when tokens per forward rises by more than `min_gain`
    (0.01) at every extra head in every sequence; not at this scale when no sequence ever exceeds
    `no_acceptance` (1.05: drafts are almost never accepted); contradicted otherwise; no data without
    a sequence of at least two points."""
    seqs = [sorted(s) for s in sequences if len(s) >= 2]
    if not seqs:
        return NO_DATA
    if max(t for s in seqs for _, t in s) <= no_acceptance:
        return NOT_AT_SCALE
    rising = all(b[1] - a[1] > min_gain for s in seqs for a, b in zip(s, s[1:]))
    return REPRODUCED if rising else CONTRADICTED


def verdict_byte_level_gain_largest(byte_speedup, best_other_speedup):
    """Reproduced when the byte-level n>=8 model's self-speculative speed-up is larger than every
    other code model's; not at this scale when no model speeds decoding up at all (both <= 1);
    contradicted otherwise; no data without both numbers."""
    if byte_speedup is None or best_other_speedup is None:
        return NO_DATA
    if max(byte_speedup, best_other_speedup) <= 1.0:
        return NOT_AT_SCALE
    return REPRODUCED if byte_speedup > best_other_speedup else CONTRADICTED


def verdict_paired(diffs, margin=0.0):
    """diffs: one number per paired comparison (n>1 model vs the n=1 model of the same size), positive
    when it goes the paper's way. Reproduced when more than half exceed +margin; contradicted when more
    than half fall below -margin; not at this scale otherwise (no clear difference at this scale);
    no data without a pair."""
    diffs = [d for d in diffs if d is not None]
    if not diffs:
        return NO_DATA
    if sum(d > margin for d in diffs) > len(diffs) / 2:
        return REPRODUCED
    if sum(d < -margin for d in diffs) > len(diffs) / 2:
        return CONTRADICTED
    return NOT_AT_SCALE


def verdict_every_m(diffs_by_m, margin=MARGIN["polynomial"]):
    """diffs_by_m: {m: [accuracy(n>1) - accuracy(n=1), ...]}. Reproduced when the mean difference
    exceeds +margin (0.01) at every m; contradicted when it is below -margin at more than half of the
    m; not at this scale otherwise; no data without a pair."""
    means = {m: statistics.mean(d) for m, d in diffs_by_m.items() if d}
    if not means:
        return NO_DATA
    if all(v > margin for v in means.values()):
        return REPRODUCED
    if sum(v < -margin for v in means.values()) > len(means) / 2:
        return CONTRADICTED
    return NOT_AT_SCALE


def verdict_lossless(flags):
    """flags: one per native speculative run (output == greedy) and per vLLM model (its cross-check against
    native greedy). Reproduced when every flag is true; contradicted when any is false; no data without one."""
    flags = [f for f in flags if f is not None]
    if not flags:
        return NO_DATA
    return REPRODUCED if all(flags) else CONTRADICTED


# ---------------------------------------------------------------- loading the study

def shape_of(cfg, size):
    """dim, n_layers, n_attn_heads of a size preset and its non-embedding parameters ("params": L blocks of
    attention 4d^2 + SwiGLU 3d*hidden, the same for every n: heads replace trunk blocks)."""
    from mtp.model import ModelConfig, preset
    p = preset(size, cfg.get("model_presets"))
    c = ModelConfig(vocab_size=1, dim=p["dim"], n_layers=p["n_layers"], n_attn_heads=p["n_attn_heads"])
    return {"dim": c.dim, "n_layers": c.n_layers, "n_attn_heads": c.n_attn_heads,
            "params": c.n_layers * (4 * c.dim * c.dim + 3 * c.dim * c.hidden_dim)}


def expected(cfg, task, key):
    """None when the config makes the study write result `key` for a model of `task`, else why not."""
    if key == "metrics":
        return None
    if key in ("polynomial", "induction"):
        if task != key:
            return "n/a"
        return None if cfg["eval"]["synthetic"]["enabled"] else "disabled (eval.synthetic.enabled: false)"
    if key in ("vllm", "code") and task != "code":
        return "n/a"
    if key == "decode":
        return None if cfg["decode"]["enabled"] else "disabled (decode.enabled: false)"
    if key == "vllm":
        return None if cfg["vllm"]["enabled"] else "disabled (vllm.enabled: false)"
    return None if cfg["eval"]["code"]["enabled"] else "disabled (eval.code.enabled: false)"


def read_result(path):
    """(data, status): status 'ok', 'missing' or 'unreadable: ...'."""
    from mtp.io import read_json
    path = Path(path)
    if not path.exists():
        return None, "missing"
    try:
        data = read_json(path)
    except UserError as e:
        return None, f"unreadable: {e}"
    if not isinstance(data, dict):
        return None, "unreadable: not a JSON object"
    return data, "ok"


def load_study(cfg):
    """One record per model of the config: identity, preset size, and each result file (or why it is absent)."""
    from mtp.config import model_name, models, task_of
    records = []
    for m in models(cfg):
        ds = cfg["datasets"][m["dataset"]]
        rec = {"dataset": m["dataset"], "size": m["size"], "n": m["n"], "name": model_name(m), "dir": m["dir"],
               "task": task_of(ds), "tokenizer": ds["tokenizer"]["kind"], **shape_of(cfg, m["size"]),
               "seq_len": m["train"]["seq_len"], "batch_size": m["train"]["batch_size"],
               "results": {}, "status": {}}
        for key, fname in RESULT_FILES.items():
            why = expected(cfg, rec["task"], key)  # a file the config does not ask for may be stale: not read
            data, status = read_result(Path(m["dir"]) / fname) if why is None else (None, why)
            rec["results"][key], rec["status"][key] = data, status
        records.append(rec)
    return records


def load_bench(cfg):
    return read_result(Path(cfg["results"]) / BENCH_TRAIN)


def missing_notes(records, keys):
    """Per result file of `keys`: which models lack it and why (missing, unreadable, disabled)."""
    notes = []
    for key in keys:
        by_reason = {}
        for r in records:
            s = r["status"][key]
            if s not in ("ok", "n/a"):
                by_reason.setdefault(s, []).append(r["name"])
        if all(r["status"][key] == "n/a" for r in records):
            notes.append(f"{RESULT_FILES[key]}: not part of this study (no model of the config's sweeps produces it)")
        for reason, names in by_reason.items():
            what = f"{RESULT_FILES[key]} {reason}"
            if reason == "missing":
                what += f" (written by `{WRITER[key]}`; the stage has not run)"
            notes.append(f"{what}: {', '.join(names)}")
    return notes


# ---------------------------------------------------------------- tables (pure)

def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _num(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _ratio(a, b):
    a, b = _num(a), _num(b)
    return a / b if a is not None and b else None


def _key(r):
    return (r["dataset"], r["params"], r["size"], r["n"])


def status_rows(records):
    return [{"model": r["name"], "task": r["task"], **{RESULT_FILES[k]: r["status"][k] for k in RESULT_FILES}}
            for r in records]


def val_loss_rows(records):
    rows = []
    for r in sorted(records, key=_key):
        m = r["results"]["metrics"]
        if m is None:
            continue
        heads = {f"val_loss_head_{i}": _num(m.get(f"val_loss_head_{i}")) for i in range(1, r["n"] + 1)}
        rows.append({"dataset": r["dataset"], "size": r["size"], "params_non_embedding": m.get("params_non_embedding"),
                     "n": r["n"], "steps": m.get("steps"), "tokens_seen": m.get("tokens_seen"),
                     "val_bits_per_byte": _num(m.get("val_bits_per_byte")), **heads})
    return rows


def _baseline(records, r):
    """The n=1 model of r's dataset and size, or None."""
    return next((b for b in records if (b["dataset"], b["size"], b["n"]) == (r["dataset"], r["size"], 1)), None)


def cost_rows(records):
    rows = []
    for r in sorted(records, key=_key):
        m = r["results"]["metrics"]
        if m is None:
            continue
        base = _baseline(records, r)
        bm = base["results"]["metrics"] if base else None
        rows.append({"dataset": r["dataset"], "size": r["size"], "n": r["n"], "device": m.get("device"),
                     "dtype": m.get("dtype"), "peak_mem_mb": _mb(m.get("peak_mem_bytes")),
                     "step_time_s": _num(m.get("step_time_s")),
                     "mem_vs_n1": _ratio(m.get("peak_mem_bytes"), _get(bm, "peak_mem_bytes")),
                     "time_vs_n1": _ratio(m.get("step_time_s"), _get(bm, "step_time_s")),
                     "flop_ratio_vs_n1": predicted_flop_ratio(r, m)})
    return rows


def _mb(b):
    return _num(b) / 2 ** 20 if _num(b) is not None else None


def predicted_flop_ratio(r, m):
    """Training FLOPs per step of r's shape at its n over n=1 (mtp.bench's count; vocab from the parameter counts)."""
    from mtp.bench import train_flops_per_step
    total, non_emb = _num(m.get("params_total")), _num(m.get("params_non_embedding"))
    if r["n"] == 1 or total is None or non_emb is None:
        return None
    vocab = round((total - non_emb) / (2 * r["dim"]))  # untied embedding + unembedding
    s = {"vocab": vocab, "dim": r["dim"], "n_layers": r["n_layers"], "n_attn_heads": r["n_attn_heads"],
         "seq": r["seq_len"], "batch": r["batch_size"]}
    return train_flops_per_step(r["n"], s) / train_flops_per_step(1, s)


def bench_rows(bench):
    """The train benchmark's peak step memory (MB) per backward mode and n, and its time ratios."""
    if not bench:
        return []
    mem = bench.get("peak_step_mem_mb") or {}
    rows = []
    for mode in ("memory_efficient", "naive"):
        for n in (1, 2, 4, 8):
            if f"{mode}_n{n}" in mem:
                rows.append({"backward": mode, "n": n, "peak_step_mem_mb": _num(mem[f"{mode}_n{n}"])})
    return rows


VLLM_METHODS = {"nospec": "none", "ngram": "ngram", "draft": "draft_model"}  # heads_k<k>: "mtp" (our heads)


def vllm_runs(v):
    """A vllm.json (mtp/vllm_stage.py) -> rows {method, k, batch_size, tokens_per_s, speedup, tokens_per_forward,
    accept_rate_per_pos}, one per configuration and batch size; method: none, mtp (our heads), ngram, draft_model."""
    rows = []
    for c in (v or {}).get("configs") or []:
        name = c.get("name") or ""
        method = "mtp" if name.startswith("heads_k") else VLLM_METHODS.get(name, name)
        for b in c.get("per_batch") or []:
            tpf = _num(b.get("mean_acceptance_length"))  # 1 + accepted / drafts: tokens per target forward
            if tpf is None and _num(b.get("num_drafts")) and _num(b.get("num_accepted_tokens")) is not None:
                tpf = 1 + b["num_accepted_tokens"] / b["num_drafts"]
            rows.append({"method": method, "k": 0 if method == "none" else c.get("k"),
                         "batch_size": b.get("batch_size"), "tokens_per_s": _num(b.get("tokens_per_s")),
                         "speedup": _num(b.get("speedup")),
                         "tokens_per_forward": 1.0 if method == "none" else tpf,
                         "accept_rate_per_pos": b.get("acceptance_rate_per_pos")})
    return rows


def _rates(x):
    return " ".join("-" if a is None else f"{a:.2f}" for a in x) if isinstance(x, list) else None


def _spec_row(engine, r, batch_size, method, k, tokens_per_s, speedup, tokens_per_forward, rates=None,
              lossless=None):
    heads = k + 1 if isinstance(k, int) and method in ("autoregressive", "self-speculative", "none", "mtp") else None
    return {"engine": engine, "dataset": r["dataset"], "size": r["size"], "n": r["n"], "batch_size": batch_size,
            "method": method, "draft_tokens": k, "heads_used": heads, "tokens_per_s": tokens_per_s, "speedup": speedup,
            "tokens_per_forward": tokens_per_forward, "accept_rate_per_pos": _rates(rates), "lossless": lossless}


def speculative_rows(records):
    """Native (decode.json) and vLLM (vllm.json) runs: one row per model, batch size and method.
    heads_used = drafted tokens + 1 for our heads (none for the ngram and draft-model baselines)."""
    rows = []
    for r in sorted(records, key=_key):
        d = r["results"]["decode"] or {}
        for b in d.get("per_batch") or []:
            ar, sp, bs = b.get("ar") or {}, b.get("spec"), b.get("batch_size")
            rows.append(_spec_row("native", r, bs, "autoregressive", 0, _num(ar.get("tokens_per_s")), 1.0, 1.0))
            if sp:
                k = sp.get("draft_tokens", d.get("draft_tokens"))
                rows.append(_spec_row("native", r, bs, "self-speculative", k, _num(sp.get("tokens_per_s")),
                                      _num(b.get("speedup")),
                                      _num(b.get("tokens_per_forward", sp.get("tokens_per_forward"))),
                                      sp.get("accept_rate_per_pos"), b.get("lossless")))
        for x in vllm_runs(r["results"]["vllm"]):
            rows.append(_spec_row("vllm", r, x["batch_size"], x["method"], x["k"], x["tokens_per_s"], x["speedup"],
                                  x["tokens_per_forward"], x["accept_rate_per_pos"]))
    return rows


def code_rows(records):
    rows = []
    for r in sorted(records, key=_key):
        e = r["results"]["code"]
        for bench, res in ((e or {}).get("benchmarks") or {}).items():
            for k, v in (res.get("pass_at_k") or {}).items():
                rows.append({"dataset": r["dataset"], "size": r["size"], "params_non_embedding": r["params"],
                             "n": r["n"], "benchmark": bench, "k": int(k.split("@")[-1]), "pass_at_k": _num(v),
                             "problems": res.get("num_problems")})
    return sorted(rows, key=lambda x: (x["dataset"], x["params_non_embedding"], x["size"], x["n"], x["benchmark"],
                                       x["k"]))


def polynomial_rows(records):
    rows = []
    for r in sorted(records, key=_key):
        e = r["results"]["polynomial"]
        if not e:
            continue
        train_max = e.get("max_ops_train", 5)
        for m, acc in sorted((e.get("accuracy_by_m") or {}).items(), key=lambda kv: int(kv[0])):
            rows.append({"dataset": r["dataset"], "size": r["size"], "n": r["n"], "m": int(m),
                         "domain": "in" if int(m) <= train_max else "out", "accuracy": _num(acc),
                         "num_tests": e.get("num_tests")})
    return rows


def induction_rows(records):
    rows = []
    for r in sorted(records, key=_key):
        e = r["results"]["induction"]
        if not e:
            continue
        rows.append({"dataset": r["dataset"], "size": r["size"], "params_non_embedding": r["params"], "n": r["n"],
                     "accuracy": _num(_get(e, "metrics", "induction_acc")),
                     "scored_tokens": _get(e, "metrics", "induction_scored_tokens"), "num_tests": e.get("num_tests")})
    return rows


# ---------------------------------------------------------------- claims (evidence -> rule -> row)

def _pairs(records, value):
    """[(r, baseline, value(r), value(baseline))]: every n>1 model whose n=1 model of the same size has both values."""
    out = []
    for r in records:
        base = _baseline(records, r)
        if r["n"] > 1 and base is not None:
            a, b = value(r), value(base)
            if a is not None and b is not None:
                out.append((r, base, a, b))
    return out


def _fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3) else f"{x:.{digits}f}"
    return str(x)


def _largest_n(rows, col, prefer=None):
    """Per (dataset, size): the cost row of n=`prefer` if it has `col`, else the largest n > 1 that has it."""
    out = []
    for g in sorted({(x["dataset"], x["size"]) for x in rows}):
        group = [x for x in rows if (x["dataset"], x["size"]) == g and x["n"] > 1 and x[col] is not None]
        pick = next((x for x in group if x["n"] == prefer), max(group, key=lambda x: x["n"], default=None))
        if pick:
            out.append(pick)
    return out


def claim_memory(records, bench):
    if bench and _num(bench.get("mem_ratio_n8_vs_n1")) is not None:
        ratio = bench["mem_ratio_n8_vs_n1"]
        ours = (f"train benchmark: peak step memory n=8 / n=1 = {ratio:.2f} "
                f"(naive backward: {_fmt(_num(bench.get('naive_mem_ratio_n8_vs_n1')), 2)})")
    else:
        top = max(_largest_n(cost_rows(records), "mem_vs_n1"), key=lambda x: x["mem_vs_n1"], default=None)
        ratio = top["mem_vs_n1"] if top else None
        ours = (f"metrics.json: largest peak memory ratio, largest n vs n=1 = {ratio:.2f} "
                f"({top['dataset']}/{top['size']} n={top['n']})") if top else "-"
    return "Peak training memory stays flat in n (memory-efficient backward)", PAPER["memory"], ours, \
        verdict_memory_flat, (ratio,)


def claim_overhead(records, bench):
    if bench and _num(bench.get("time_ratio_n4_vs_n1")) is not None:
        ratio, pred = bench["time_ratio_n4_vs_n1"], _num(bench.get("flop_ratio_n4_vs_n1"))
        ours = f"train benchmark: step time n=4 / n=1 = {ratio:.2f} (FLOP count predicts {_fmt(pred, 2)})"
    else:
        chosen = _largest_n(cost_rows(records), "time_vs_n1", prefer=4)
        preds = [x["flop_ratio_vs_n1"] for x in chosen if x["flop_ratio_vs_n1"] is not None]
        ratio = statistics.median(x["time_vs_n1"] for x in chosen) if chosen else None
        pred = statistics.median(preds) if preds else None
        ours = (f"metrics.json: median step time vs n=1 = {ratio:.2f} over {len(chosen)} sizes (n=4 where trained, "
                f"else the largest n; FLOP count predicts {_fmt(pred, 2)})") if chosen else "-"
    if ratio is not None and ratio < OVERHEAD_MIN:
        ours += f"; below {OVERHEAD_MIN}: timing noise (e.g. a busy machine), rerun the training or `mtp bench train`"
    return "Small training-time overhead of n heads", PAPER["overhead"], ours, verdict_training_overhead, (ratio, pred)


def _smallest_batch(rows):
    sizes = [x["batch_size"] for x in rows if isinstance(x["batch_size"], int)]
    return min(sizes) if sizes else None


def tpf_sequences(spec_rows):
    """[(label, [(heads used, tokens per forward)])]: native per (dataset, size) across n, vLLM per model across k."""
    out = []
    for engine in ("native", "vllm"):
        rows = [x for x in spec_rows
                if x["engine"] == engine and x["heads_used"] and x["tokens_per_forward"] is not None]
        bs = _smallest_batch(rows)
        rows = [x for x in rows if x["batch_size"] == bs]
        if engine == "native":
            keyf = lambda x: (x["dataset"], x["size"])  # noqa: E731
        else:
            keyf = lambda x: (x["dataset"], x["size"], x["n"])  # noqa: E731
        for g in sorted({keyf(x) for x in rows}, key=str):
            pts = {}
            for x in rows:
                if keyf(x) == g:
                    pts.setdefault(x["heads_used"], x["tokens_per_forward"])
            label = f"{engine} {'/'.join(str(p) for p in g)} (batch {bs})"
            out.append((label, sorted(pts.items())))
    return out


def claim_tpf(records):
    seqs = [s for s in tpf_sequences(speculative_rows(records)) if len(s[1]) >= 2]
    ours = "; ".join(f"{label}: " + ", ".join(f"{h} heads {t:.2f}" for h, t in pts) for label, pts in seqs) or "-"
    return "Tokens per forward grow with the number of heads used", PAPER["tpf"], ours, \
        verdict_tokens_per_forward_grow, ([pts for _, pts in seqs],)


def claim_bytes(records):
    rows = [x for x in speculative_rows(records) if x["engine"] == "native" and x["method"] == "self-speculative"
            and x["speedup"] is not None]
    bs = _smallest_batch(rows)
    rows = [x for x in rows if x["batch_size"] == bs]
    kind = {(r["dataset"], r["size"], r["n"]): (r["task"], r["tokenizer"]) for r in records}
    byte = [x for x in rows if kind[(x["dataset"], x["size"], x["n"])] == ("code", "byte") and x["n"] >= 8]
    other = [x for x in rows if kind[(x["dataset"], x["size"], x["n"])][0] == "code" and x not in byte]
    b = max(byte, key=lambda x: x["speedup"], default=None)
    o = max(other, key=lambda x: x["speedup"], default=None)
    def desc(x):
        return (f"{x['dataset']}/{x['size']}-n{x['n']} {x['speedup']:.2f}x, "
                f"{_fmt(x['tokens_per_forward'], 2)} tokens/forward")
    ours = (f"byte level: {desc(b) if b else 'no model with n >= 8'}; "
            f"best other code model: {desc(o) if o else '-'} (batch {bs})")
    return "Byte-level n=8 gives the largest speculative gain", PAPER["bytes"], ours, verdict_byte_level_gain_largest, \
        (b["speedup"] if b else None, o["speedup"] if o else None)


def claim_small_loss(records):
    small = [r for r in records if r["task"] == "code" and r["params"] < SMALL_MAX_PARAMS]
    pairs = _pairs(small, lambda r: _num(_get(r["results"]["metrics"], "val_bits_per_byte")))
    diffs = [a - b for _, _, a, b in pairs]
    ours = "; ".join(f"{r['name']} {a:.3f} vs n=1 {b:.3f} bits/byte" for r, _, a, b in pairs) or "-"
    return "Small models lose next-token quality with n > 1 (head-1 validation bits per byte)", PAPER["small_loss"], \
        ours, verdict_paired, (diffs, MARGIN["bpb"])


def _pass1(r, bench):
    res = _get(r["results"]["code"], "benchmarks", bench, "pass_at_k") or {}
    return _num(res.get("pass@1"))


def claim_small_pass(records):
    small = [r for r in records if r["task"] == "code" and r["params"] < SMALL_MAX_PARAMS]
    benches = sorted({b for r in small for b in (_get(r["results"]["code"], "benchmarks") or {})})
    diffs, parts = [], []
    for bench in benches:
        for r, _, a, b in _pairs(small, lambda r, bench=bench: _pass1(r, bench)):
            diffs.append(b - a)
            parts.append(f"{bench} {r['name']} {a:.3f} vs n=1 {b:.3f}")
    return "Small models lose pass@1 with n > 1", PAPER["small_pass"], "; ".join(parts) or "-", verdict_paired, \
        (diffs, MARGIN["pass"])


def claim_induction(records):
    small = [r for r in records if r["params"] <= INDUCTION_MAX_PARAMS]
    pairs = _pairs(small, lambda r: _num(_get(r["results"]["induction"], "metrics", "induction_acc")))
    ours = "; ".join(f"{r['name']} {a:.3f} vs n=1 {b:.3f}" for r, _, a, b in pairs) or "-"
    return "n > 1 helps induction at <= 30M parameters", PAPER["induction"], ours, verdict_paired, \
        ([a - b for _, _, a, b in pairs], MARGIN["induction"])


def claim_polynomial(records):
    diffs = {}
    for r, base, acc, acc1 in _pairs(records, lambda r: _get(r["results"]["polynomial"], "accuracy_by_m")):
        for m in acc:
            if _num(acc[m]) is not None and _num(acc1.get(m)) is not None:
                diffs.setdefault(int(m), []).append(acc[m] - acc1[m])
    ours = ", ".join(f"m={m}: {statistics.mean(d):+.3f}" for m, d in sorted(diffs.items()))
    ours = f"mean accuracy(n>1) - accuracy(n=1): {ours}" if diffs else "-"
    return "n > 1 helps polynomial arithmetic at every m", PAPER["polynomial"], ours, verdict_every_m, (diffs,)


def claim_lossless(records):
    rows = [x for x in speculative_rows(records) if x["method"] == "self-speculative" and x["lossless"] is not None]
    bad = [f"{x['dataset']}/{x['size']}-n{x['n']} batch {x['batch_size']}" for x in rows if not x["lossless"]]
    checks = [_get(r["results"]["vllm"], "crosscheck", "ok") for r in records]
    checks = [c for c in checks if isinstance(c, bool)]
    ours = []
    if rows:
        ours.append(f"{len(rows) - len(bad)} of {len(rows)} native runs identical to greedy"
                    + (f" (differs: {', '.join(bad)})" if bad else ""))
    if checks:
        ours.append(f"{sum(checks)} of {len(checks)} vLLM models match native greedy in every configuration")
    return "Self-speculative decoding is lossless", PAPER["lossless"], "; ".join(ours) or "-", verdict_lossless, \
        ([x["lossless"] for x in rows] + checks,)


def claims(records, bench):
    """The claims table: claim, the paper's number, ours, the verdict of its rule and the rule itself."""
    out = []
    made = [claim_memory(records, bench), claim_overhead(records, bench)]
    made += [f(records) for f in (claim_tpf, claim_bytes, claim_small_loss, claim_small_pass, claim_induction,
                                  claim_polynomial, claim_lossless)]
    for claim, paper, ours, rule, args in made:
        out.append({"claim": claim, "paper": paper, "ours": ours, "verdict": rule(*args),
                    "rule": f"{rule.__name__}: {' '.join(rule.__doc__.split())}"})
    return out


# ---------------------------------------------------------------- writing tables

def _cell(x):
    return f"{x:.4g}" if isinstance(x, float) else _fmt(x)


def columns(rows):
    """Every key of the rows, in first-seen order (rows of models with more heads have more columns)."""
    return list(dict.fromkeys(k for r in rows for k in r))


def markdown_table(rows):
    if not rows:
        return "_no data_\n"
    cols = columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows):
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=columns(rows), lineterminator="\n")
        w.writeheader()
        w.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    else:
        buf.write("no data\n")
    return buf.getvalue()


def write_table(out, name, title, rows, notes=(), extra_md=""):
    md = f"# {title}\n\n" + "".join(f"- {n}\n" for n in notes) + ("\n" if notes else "")
    md += markdown_table(rows) + extra_md
    write_text(out / f"{name}.md", md)
    write_text(out / f"{name}.csv", csv_text(rows))


# ---------------------------------------------------------------- figures

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)


def _no_data(ax, title, reason):
    ax.set_title(title)
    ax.text(0.5, 0.5, f"no data\n{reason}", ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def figure_no_data(path, title, reason):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    _no_data(ax, title, reason)
    _save(fig, path)


def _grid(count, ncols=3, w=5.0, h=3.6):
    plt = _plt()
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[count:]:
        a.set_visible(False)
    return fig, flat[:count]


def plot_loss_curves(records, path):
    have = [r for r in sorted(records, key=_key) if _get(r["results"]["metrics"], "history", "step")]
    if not have:
        return figure_no_data(path, "Training loss per head", "no metrics.json with a history")
    fig, axes = _grid(len(have), ncols=4, w=4.2, h=3.2)
    for ax, r in zip(axes, have):
        m = r["results"]["metrics"]
        h, v = m["history"], m.get("val_history") or {}
        for i in range(1, r["n"] + 1):
            if len(h.get(f"loss_head_{i}") or []) != len(h["step"]):
                continue
            line, = ax.plot(h["step"], h[f"loss_head_{i}"], lw=1.2, label=f"head {i}")
            if len(v.get(f"val_loss_head_{i}") or []) == len(v.get("step") or []):
                ax.plot(v["step"], v[f"val_loss_head_{i}"], "o", color=line.get_color(), ms=4)
        ax.set_title(r["name"], fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7, ncol=2 if r["n"] > 2 else 1)
    fig.suptitle("Training (lines) and validation (dots) loss per head", y=1.0)
    fig.tight_layout()
    _save(fig, path)


def _legend(ax, **kw):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _by(rows, key):
    out = {}
    for x in rows:
        out.setdefault(key(x), []).append(x)
    return out


def plot_val_loss(records, path):
    rows = [r for r in records if _num(_get(r["results"]["metrics"], "val_bits_per_byte")) is not None]
    if not rows:
        return figure_no_data(path, "Final validation loss", "no metrics.json")
    groups = _by(rows, lambda r: r["dataset"])
    fig, axes = _grid(len(groups), ncols=3, w=5.0)
    for ax, (ds, rs) in zip(axes, sorted(groups.items())):
        for n, line in sorted(_by(rs, lambda r: r["n"]).items()):
            line = sorted(line, key=lambda r: r["params"])
            ax.plot([r["params"] for r in line], [r["results"]["metrics"]["val_bits_per_byte"] for r in line],
                    "o-", label=f"n={n}")
        ax.set_xscale("log")
        ax.set_title(f"{ds}: head-1 validation loss")
        ax.set_xlabel("model size (non-embedding parameters)")
        ax.set_ylabel("validation loss (bits per byte)")
        ax.grid(alpha=0.3, which="both")
        _legend(ax, title="heads")
    fig.tight_layout()
    _save(fig, path)


def plot_cost(records, bench, path):
    rows = cost_rows(records)
    fig, axes = _grid(3, ncols=3, w=4.6)
    groups = _by(rows, lambda x: f"{x['dataset']}/{x['size']}")
    for ax, col, label, title in ((axes[0], "peak_mem_mb", "peak memory (MiB)", "Peak training memory by n"),
                                  (axes[1], "step_time_s", "step time (s)", "Training step time by n")):
        pts = {g: sorted((x["n"], x[col]) for x in xs if x[col] is not None) for g, xs in groups.items()}
        pts = {g: p for g, p in pts.items() if p}
        if not pts:
            _no_data(ax, title, "no metrics.json")
            continue
        for g, p in sorted(pts.items()):
            ax.plot(*zip(*p), "o-", label=g)
        ax.set_title(title)
        ax.set_xlabel("heads n")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7)
    brows = bench_rows(bench)
    if brows:
        for mode, xs in _by(brows, lambda x: x["backward"]).items():
            axes[2].plot([x["n"] for x in xs], [x["peak_step_mem_mb"] for x in xs], "o-", label=f"{mode} backward")
        axes[2].set_title("Train benchmark: memory of one step")
        axes[2].set_xlabel("heads n")
        axes[2].set_ylabel("peak step memory (MiB)")
        axes[2].set_ylim(bottom=0)
        axes[2].grid(alpha=0.3)
        _legend(axes[2], fontsize=8)
    else:
        _no_data(axes[2], "Train benchmark", f"{BENCH_TRAIN} absent\n(mtp bench train > <results>/{BENCH_TRAIN})")
    fig.tight_layout()
    _save(fig, path)


def plot_speculative(records, path):
    rows = speculative_rows(records)
    if not rows:
        return figure_no_data(path, "Speculative decoding", "no decode.json or vllm.json")
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), squeeze=False)
    for row, engine in enumerate(("native", "vllm")):
        xs = [x for x in rows if x["engine"] == engine]
        bs = _smallest_batch(xs)
        xs = [x for x in xs if x["batch_size"] == bs]
        name = "native engine" if engine == "native" else "vLLM"
        for col, (metric, label) in enumerate((("tokens_per_forward", "tokens per forward"),
                                               ("speedup", "speed-up vs no speculation (x)"))):
            ax = axes[row][col]
            title = f"{name}: {label.split(' (')[0]} (batch {bs})"
            if not xs:
                _no_data(ax, title, "no decode.json" if engine == "native" else "no vllm.json")
                continue
            if engine == "native":
                lines = _by([x for x in xs if x["heads_used"]], lambda x: f"{x['dataset']}/{x['size']}")
            else:
                lines = _by([x for x in xs if x["heads_used"]], lambda x: f"{x['dataset']}/{x['size']}-n{x['n']}")
            colors = {}
            for g, ps in sorted(lines.items()):
                pts = sorted({x["heads_used"]: x[metric] for x in ps if x[metric] is not None}.items())
                if len(pts) >= 2:
                    ln, = ax.plot(*zip(*pts), "o-", label=f"{g} own heads" if engine == "vllm" else g)
                    colors[g] = ln.get_color()
            if engine == "vllm":
                for method, marker in (("ngram", "x"), ("draft_model", "s")):
                    ps = [x for x in xs if x["method"] == method and x[metric] is not None
                          and isinstance(x["draft_tokens"], int)]
                    for x in ps:
                        g = f"{x['dataset']}/{x['size']}-n{x['n']}"
                        ax.plot(x["draft_tokens"] + 1, x[metric], marker, color=colors.get(g, "black"), ms=8)
                    if ps:
                        ax.plot([], [], marker, color="gray", label=f"{method} baseline (x = drafts + 1)")
            ax.axhline(1.0, color="gray", lw=0.8, ls=":")
            ax.set_title(title)
            ax.set_xlabel("heads used (drafted tokens + 1)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            _legend(ax, fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_code(records, path):
    rows = code_rows(records)
    if not rows:
        return figure_no_data(path, "Code benchmarks", "no eval_code.json")
    benches = sorted({x["benchmark"] for x in rows})
    fig, axes = _grid(len(benches), ncols=2, w=5.5)
    for ax, bench in zip(axes, benches):
        xs = [x for x in rows if x["benchmark"] == bench and x["pass_at_k"] is not None]
        k = min((x["k"] for x in xs), default=1)
        for g, ps in sorted(_by([x for x in xs if x["k"] == k], lambda x: (x["dataset"], x["n"])).items()):
            ps = sorted(ps, key=lambda x: x["params_non_embedding"])
            ax.plot([x["params_non_embedding"] for x in ps], [100 * x["pass_at_k"] for x in ps], "o-",
                    label=f"{g[0]} n={g[1]}")
        ax.set_xscale("log")
        ax.set_title(f"{bench}: pass@{k}")
        ax.set_xlabel("model size (non-embedding parameters)")
        ax.set_ylabel(f"pass@{k} (%)")
        ax.grid(alpha=0.3, which="both")
        _legend(ax, fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_polynomial(records, path):
    rows = [x for x in polynomial_rows(records) if x["accuracy"] is not None]
    if not rows:
        return figure_no_data(path, "Polynomial arithmetic", "no eval_polynomial.json")
    groups = _by(rows, lambda x: f"{x['dataset']}/{x['size']}")
    fig, axes = _grid(len(groups), ncols=3, w=5.0)
    for ax, (g, xs) in zip(axes, sorted(groups.items())):
        for n, ps in sorted(_by(xs, lambda x: x["n"]).items()):
            ps = sorted(ps, key=lambda x: x["m"])
            ax.plot([x["m"] for x in ps], [100 * x["accuracy"] for x in ps], "o-", label=f"n={n}")
        ood = [x["m"] for x in xs if x["domain"] == "out"]
        if ood:
            ax.axvspan(min(ood) - 0.5, max(ood) + 0.5, color="gray", alpha=0.15, label="out of domain")
        ax.set_title(f"{g}: exact-match accuracy")
        ax.set_xlabel("number of operations m")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_induction(records, path):
    rows = [x for x in induction_rows(records) if x["accuracy"] is not None]
    if not rows:
        return figure_no_data(path, "Induction", "no eval_induction.json")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for (ds, n), ps in sorted(_by(rows, lambda x: (x["dataset"], x["n"])).items()):
        ps = sorted(ps, key=lambda x: x["params_non_embedding"])
        ax.plot([x["params_non_embedding"] for x in ps], [100 * x["accuracy"] for x in ps], "o-", label=f"{ds} n={n}")
    ax.set_xscale("log")
    ax.set_title("Induction: accuracy on the 2nd token of a repeated name")
    ax.set_xlabel("model size (non-embedding parameters)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    _legend(ax, fontsize=8)
    fig.tight_layout()
    _save(fig, path)


# ---------------------------------------------------------------- the report

SECTIONS = [  # (id, title, figure or None, table, result files it reads)
    ("status", "Study status", None, "status", list(RESULT_FILES)),
    ("claims", "Claims of the paper, checked", None, "claims", []),
    ("training", "Training: loss curves and final validation loss (Fig. 3 analogue)", "loss_curves", "val_loss",
     ["metrics"]),
    ("cost", "Cost: peak memory and step time by n (Fig. 2 / Table S5 analogue)", "cost", "cost", ["metrics"]),
    ("speculative", "Speculative decoding, native and vLLM (Tables S2/S3 analogue)", "speculative", "speculative",
     ["decode", "vllm"]),
    ("code", "Code benchmarks: pass@k by size x n (Table S7 analogue)", "code", "code", ["code"]),
    ("polynomial", "Polynomial arithmetic by number of operations (Fig. 8 analogue)", "polynomial", "polynomial",
     ["polynomial"]),
    ("induction", "Induction by size x n (Fig. 7 analogue)", "induction", "induction", ["induction"]),
]


def build(cfg):
    """Write every file of OUTPUTS under <results>/report/; return (folder, claims rows)."""
    out = Path(cfg["results"]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    records = load_study(cfg)
    bench, bench_status = load_bench(cfg)
    table_rows = {"status": status_rows(records), "val_loss": val_loss_rows(records), "cost": cost_rows(records),
                  "speculative": speculative_rows(records), "code": code_rows(records),
                  "polynomial": polynomial_rows(records), "induction": induction_rows(records),
                  "claims": claims(records, bench)}
    notes = {sid: missing_notes(records, keys) for sid, _, _, _, keys in SECTIONS if sid != "status"}
    if bench is None:
        notes["cost"].append(f"train benchmark {BENCH_TRAIN}: {bench_status} (optional; `mtp bench train > "
                             f"{Path(cfg['results']) / BENCH_TRAIN}` adds it)")
    extra = {"cost": "\n## Train benchmark (bench/train.json)\n\n" + markdown_table(bench_rows(bench)) +
             (f"\nstep time n=4 / n=1: {_fmt(bench.get('time_ratio_n4_vs_n1'), 3)}, FLOP ratio "
              f"{_fmt(bench.get('flop_ratio_n4_vs_n1'), 3)}, device {bench.get('device')}\n" if bench else "")}
    for sid, title, _, table, _ in SECTIONS:
        write_table(out, table, title, table_rows[table], notes.get(sid, ()), extra.get(sid, ""))
    plot_loss_curves(records, out / "loss_curves.png")
    plot_val_loss(records, out / "val_loss.png")
    plot_cost(records, bench, out / "cost.png")
    plot_speculative(records, out / "speculative.png")
    plot_code(records, out / "code.png")
    plot_polynomial(records, out / "polynomial.png")
    plot_induction(records, out / "induction.png")
    write_text(out / "index.html", index_html(cfg, table_rows, notes, bench))
    return out, table_rows["claims"]


def _html_table(rows):
    if not rows:
        return "<p><em>no data</em></p>"
    cols = columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}.missing{color:#a40}
.v-reproduced{background:#dfd}.v-contradicted{background:#fdd}.v-not-at-this-scale{background:#ffd}
.v-no-data{background:#eee}"""


def index_html(cfg, table_rows, notes, bench):
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>mtp report: {html.escape(str(cfg['results']))}"
             f"</title><style>{STYLE}</style></head><body>",
             "<h1>Multi-token prediction: study report</h1>",
             "<p>Reproducing Gloeckle et al., <em>Better &amp; Faster Large Language Models via Multi-token "
             "Prediction</em> "
             f"(ICML 2024). Results: <code>{html.escape(str(cfg['results']))}</code>; "
             f"{len(table_rows['status'])} models in the config.</p>", "<ul>"]
    parts += [f"<li><a href='#{sid}'>{html.escape(title)}</a></li>" for sid, title, *_ in SECTIONS]
    parts.append("</ul>")
    for sid, title, fig, table, _ in SECTIONS:
        parts.append(f"<h2 id='{sid}'>{html.escape(title)}</h2>")
        parts += [f"<p class='missing'>Missing: {html.escape(n)}</p>" for n in notes.get(sid, ())]
        if sid == "claims":
            parts.append(claims_html(table_rows["claims"]))
        if fig:
            parts.append(f"<p><img src='{fig}.png' alt='{html.escape(title)}'></p>")
        if sid == "training":
            parts.append("<p><img src='val_loss.png' alt='final validation loss by size and n'></p>")
        if sid != "claims":
            parts.append(_html_table(table_rows[table]))
        if sid == "cost" and bench:
            parts.append("<h3>Train benchmark</h3>" + _html_table(bench_rows(bench)))
        parts.append(f"<p>Table: <a href='{table}.md'>{table}.md</a>, <a href='{table}.csv'>{table}.csv</a></p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def claims_html(rows):
    head = "<tr><th>claim</th><th>paper</th><th>ours</th><th>verdict</th><th>rule</th></tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in ("claim", "paper", "ours"))
                   + f"<td class='v-{r['verdict'].replace(' ', '-')}'>{html.escape(r['verdict'])}</td>"
                   f"<td><small>{html.escape(r['rule'])}</small></td></tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def add_arguments(p):
    from mtp.cli import add_config_arg
    add_config_arg(p)
    p.add_argument("--no-tracking", action="store_true", help="do not log the report to the study's MLflow parent run")


def run(args):
    from mtp import config, tracking
    cfg = config.load(args.config)
    out, rows = build(cfg)
    if not args.no_tracking:
        tracking.log_parent_artifacts(cfg, out, "report")
    for r in rows:
        print(f"{r['verdict']:>18}  {r['claim']}")
    print(f"report: {out / 'index.html'}")
