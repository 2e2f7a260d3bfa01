"""Head architectures side by side (issue #14; the paper's Table S4 compared head types on quality only): per
dataset, head type x n -> parameters, validation bits/byte of head 1, the task's score, acceptance per draft position,
tokens per forward, native and vLLM speed-up at batch 1 and the largest batch, training step time and memory;
and a figure of acceptance per draft position by head type. Speed figures of degenerate output are left out
(mtp.report.study.output_check), as in the speculative section."""
from mtp.report.figures import by, figure_no_data, grid, legend, save
from mtp.report.code import benchmarks
from mtp.report.study import num, order, output_check, result_files
from mtp.report.tasks import metric as task_metric
from mtp.result_types import Metrics
from mtp.report.vllm import vllm_runs
from mtp.tasks import TASKS


def _native(r):
    """decode.json -> {batch size: per-batch row} and the acceptance per draft position at the smallest batch."""
    d = r.results["decode"]
    rows = {b.batch_size: b for b in (d.per_batch if d is not None else [])}
    first = rows[min(rows)] if rows else None
    return rows, first.spec.accept_rate_per_pos if first is not None and first.spec is not None else None


def _score(r):
    """(metric name, value): the task's headline metric, or pass@1 of the first code benchmark."""
    if r.task in TASKS:
        metric = TASKS[r.task].metric
        return metric, task_metric(r, TASKS[r.task])
    for bench, res in benchmarks(r).items():
        return f"{bench} pass@1", num(res.pass_at(1))
    return None, None


def _fmt(rates):
    return " ".join("-" if num(a) is None else f"{a:.2f}" for a in rates) if isinstance(rates, list) else None


def _acceptance(records):
    """[(dataset, label, rates, ok)] of the models with n > 1 and a decode.json; ok: its output is not degenerate
    (the figure dashes the others: runs of one token are easy to draft, their rates flatter the heads)."""
    out = []
    for r in sorted(records, key=lambda x: (x.dataset, x.head_type, x.n_heads)):
        rates = _native(r)[1]
        if r.n_heads > 1 and isinstance(rates, list):
            ok = output_check(r, "decode") == "ok"
            label = f"{r.head_type} n={r.n_heads} ({r.size})"
            label += "" if ok else ", degenerate output"
            out.append((r.dataset, label, rates, ok))
    return out


def head_rows(records):
    """One row per model: dataset, head_type, n, the quality and speed figures above."""
    rows = []
    for r in sorted(records, key=lambda x: (x.dataset, x.head_type, x.n_heads, order(x))):
        m = r.results["metrics"] or Metrics()
        native, accept = _native(r)
        ok = output_check(r, "decode") == "ok"
        heads = [x for x in vllm_runs(r.results["vllm"]) if x["method"] == "mtp" and x["k"] == r.n_heads - 1
                 and output_check(r, "vllm") == "ok"]
        metric, score = _score(r)
        batches = sorted(native)
        row = {"dataset": r.dataset, "preset": r.size, "head_type": r.head_type,
               "n": r.n_heads, "params": num(m.params_total),  # equal per size and n (matched widths)
               "val_bits_per_byte": num(m.val_bits_per_byte), "score_metric": metric,
               "score": score, "accept_rate_per_pos": _fmt(accept) if ok and r.n_heads > 1 else None,
               "tokens_per_forward": num(native[batches[0]].tokens_per_forward) if batches and ok and r.n_heads > 1
               else None,
               "step_time_s": num(m.step_time_s), "peak_mem_mb": (num(m.peak_mem_bytes) or 0) / 2**20
               or None}
        for b in batches[:1] + batches[-1:] if batches else ():
            row[f"native_speedup_b{b}"] = num(native[b].speedup) if ok and r.n_heads > 1 else None
            row[f"vllm_speedup_b{b}"] = next((x["speedup"] for x in heads if x["batch_size"] == b), None)
        rows.append(row)
    return rows


def plot_heads(records, path):
    """Acceptance rate per draft position, one line per head type and n, a panel per dataset."""
    rows = _acceptance(records)
    if not rows:
        return figure_no_data(path, "Acceptance per draft position by head type",
                              f"no {result_files()['decode']} of a model with n > 1")
    groups = by(rows, lambda x: x[0])
    fig, axes = grid(len(groups), ncols=2, w=5.5)
    for ax, (dataset, xs) in zip(axes, groups.items()):
        for _, label, rates, ok in xs:
            rates = [num(v) for v in rates]
            ax.plot(range(1, len(rates) + 1), rates, "o-" if ok else "o--", alpha=1 if ok else 0.6, label=label)
        ax.set_xticks(range(1, max(len(x[2]) for x in xs) + 1))
        ax.set_title(f"{dataset}: acceptance per draft position")
        ax.set_xlabel("draft position j (token t+j+1)")
        ax.set_ylabel("acceptance rate (batch 1)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        legend(ax, fontsize=8)
    fig.tight_layout()
    save(fig, path)
