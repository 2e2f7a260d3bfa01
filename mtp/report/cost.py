"""Cost of training (Fig. 2 / Table S5 analogue): peak memory and step time by n, from metrics.json and the
optional train benchmark <results>/bench/train.json (`mtp bench train > results/bench/train.json`); the
memory and overhead claims.

Memory is judged only from `mtp bench train` (what a step adds), never from the process peak of metrics.json
(weights, optimizer and data included).
"""
import statistics
from pathlib import Path

from mtp.presets import train_flops_per_step
from mtp.report.figures import by, grid, legend, no_data, save
from mtp.report.study import BENCH_TRAIN, baseline, get, num, order, safe_ratio
from mtp.report.tables import fmt, markdown_table
from mtp.report.verdicts import CONTRADICTED, NO_DATA, NOT_AT_SCALE, REPRODUCED, claim

# Paper, Fig. 2: memory-efficient peak memory is flat in n (ratio 1.0). We allow 15% for what a step's
# measurement carries besides the logits (CPU: RSS pages and allocator caches of a fresh process; CUDA:
# allocator rounding). benchmarks/RESULTS.md states <= 1.15; the code said 1.25 with no reason given, so the
# code was the one that was wrong (measured: 0.73 on an H100, 0.79 on CPU; naive n=8 reaches 1.57-2.56).
MEMORY_FLAT_MAX = 1.15
# Paper, Table S5: step time n=4 / n=1 = 1.07-1.22. 1.30 = the paper's worst case + 0.08 of timing noise.
OVERHEAD_MAX = 1.30
OVERHEAD_MIN = 0.8  # below: timing noise (a shared machine): n heads only add work at matched parameters
# No paper number: the extra unembeddings weigh more at small width than at 7B; a ratio within 15% of the
# FLOP-count prediction is "explained by them" (15%: the spread of our CPU step timings).
OVERHEAD_FLOP_SLACK = 1.15

PAPER_MEMORY = "peak memory O(V+d) instead of O(nV+d): independent of n (Section 2, Fig. 2)"
PAPER_OVERHEAD = "training time n=4 vs n=1: 1.07-1.22x (Table S5)"


def verdict_memory_flat(ratio, limit=MEMORY_FLAT_MAX):
    """ratio: the memory a training step adds (mtp bench train: peak_step_mem_mb, memory-efficient backward)
    at n=8 over n=1. Reproduced when at most `limit` (1.15: flat, as in the paper's Fig. 2, plus 15% of
    measurement noise); contradicted when above; no data without a ratio (process RSS is not used)."""
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


# ---- rows

def cost_rows(records):
    """Per model, from metrics.json: process peak memory (RSS on CPU, max allocated on CUDA: weights, optimizer
    and data included; shown, never judged: the memory claim uses `mtp bench train`), step time, ratios to n=1."""
    rows = []
    for r in sorted(records, key=order):
        m = r["results"]["metrics"]
        if m is None:
            continue
        base = baseline(records, r)
        bm = base["results"]["metrics"] if base else None
        rows.append({"dataset": r["dataset"], "size": r["size"], "n": r["n"], "device": m.get("device"),
                     "dtype": m.get("dtype"), "process_peak_mb": _mb(m.get("peak_mem_bytes")),
                     "step_time_s": num(m.get("step_time_s")),
                     "process_peak_vs_n1": safe_ratio(m.get("peak_mem_bytes"), get(bm, "peak_mem_bytes")),
                     "time_vs_n1": safe_ratio(m.get("step_time_s"), get(bm, "step_time_s")),
                     "flop_ratio_vs_n1": predicted_flop_ratio(r, m)})
    return rows


def _mb(b):
    return num(b) / 2 ** 20 if num(b) is not None else None


def predicted_flop_ratio(r, m):
    """Training FLOPs per step of r's shape at its n over n=1 (mtp.presets' count, as mtp bench; vocab from the parameter counts)."""
    total, non_emb = num(m.get("params_total")), num(m.get("params_non_embedding"))
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
                rows.append({"backward": mode, "n": n, "peak_step_mem_mb": num(mem[f"{mode}_n{n}"])})
    return rows


def bench_markdown(bench):
    """The train benchmark's part of cost.md."""
    return ("\n## Train benchmark (bench/train.json)\n\n" + markdown_table(bench_rows(bench)) +
            (f"\nstep time n=4 / n=1: {fmt(bench.get('time_ratio_n4_vs_n1'), 3)}, FLOP ratio "
             f"{fmt(bench.get('flop_ratio_n4_vs_n1'), 3)}, device {bench.get('device')}\n" if bench else ""))


def bench_missing_note(cfg, status):
    return (f"train benchmark {BENCH_TRAIN}: {status} (optional; `mtp bench train > "
            f"{Path(cfg['results']) / BENCH_TRAIN}` adds it)")


# ---- claims

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
    """Memory a training step adds, as `mtp bench train` measures it; metrics.json's process peak is not used."""
    ratio = num(get(bench, "mem_ratio_n8_vs_n1"))
    mem = get(bench, "peak_step_mem_mb") or {}
    if ratio is not None:
        ours = (f"train benchmark: memory added by one step, memory-efficient backward, n=8 / n=1 = {ratio:.2f} "
                f"({fmt(num(mem.get('memory_efficient_n8')), 1)} / {fmt(num(mem.get('memory_efficient_n1')), 1)}"
                f" MiB; naive backward: {fmt(num(get(bench, 'naive_mem_ratio_n8_vs_n1')), 2)})")
    else:
        ours = (f"no data: {BENCH_TRAIN} absent or without mem_ratio_n8_vs_n1 (`mtp bench train > <results>/"
                f"{BENCH_TRAIN}` measures it); metrics.json's peak is the whole process (weights, optimizer, data), "
                f"not what a step adds, and is not used")
    return claim("Peak training memory stays flat in n (memory-efficient backward)", PAPER_MEMORY, ours,
                 verdict_memory_flat, (ratio,))


def claim_overhead(records, bench):
    if bench and num(bench.get("time_ratio_n4_vs_n1")) is not None:
        ratio, pred = bench["time_ratio_n4_vs_n1"], num(bench.get("flop_ratio_n4_vs_n1"))
        ours = f"train benchmark: step time n=4 / n=1 = {ratio:.2f} (FLOP count predicts {fmt(pred, 2)})"
    else:
        chosen = _largest_n(cost_rows(records), "time_vs_n1", prefer=4)
        preds = [x["flop_ratio_vs_n1"] for x in chosen if x["flop_ratio_vs_n1"] is not None]
        ratio = statistics.median(x["time_vs_n1"] for x in chosen) if chosen else None
        pred = statistics.median(preds) if preds else None
        ours = (f"metrics.json: median step time vs n=1 = {ratio:.2f} over {len(chosen)} sizes (n=4 where trained, "
                f"else the largest n; FLOP count predicts {fmt(pred, 2)})") if chosen else "-"
    if ratio is not None and ratio < OVERHEAD_MIN:
        ours += f"; below {OVERHEAD_MIN}: timing noise (e.g. a busy machine), rerun the training or `mtp bench train`"
    return claim("Small training-time overhead of n heads", PAPER_OVERHEAD, ours, verdict_training_overhead,
                 (ratio, pred))


# ---- figure

def plot_cost(records, bench, path):
    rows = cost_rows(records)
    fig, axes = grid(3, ncols=3, w=4.6)
    groups = by(rows, lambda x: f"{x['dataset']}/{x['size']}")
    for ax, col, label, title in ((axes[0], "process_peak_mb", "process peak (MiB)",
                                   "Process peak memory by n (not judged)"),
                                  (axes[1], "step_time_s", "step time (s)", "Training step time by n")):
        pts = {g: sorted((x["n"], x[col]) for x in xs if x[col] is not None) for g, xs in groups.items()}
        pts = {g: p for g, p in pts.items() if p}
        if not pts:
            no_data(ax, title, "no metrics.json")
            continue
        for g, p in sorted(pts.items()):
            ax.plot(*zip(*p), "o-", label=g)
        ax.set_title(title)
        ax.set_xlabel("heads n")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        legend(ax, fontsize=7)
    _plot_bench(axes[2], bench_rows(bench))
    fig.tight_layout()
    save(fig, path)


def _plot_bench(ax, brows):
    if not brows:
        no_data(ax, "Train benchmark", f"{BENCH_TRAIN} absent\n(mtp bench train > <results>/{BENCH_TRAIN})")
        return
    for mode, xs in by(brows, lambda x: x["backward"]).items():
        ax.plot([x["n"] for x in xs], [x["peak_step_mem_mb"] for x in xs], "o-", label=f"{mode} backward")
    ax.set_title("Train benchmark: memory of one step")
    ax.set_xlabel("heads n")
    ax.set_ylabel("peak step memory (MiB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    legend(ax, fontsize=8)
