"""Training (Fig. 3 analogue): loss curves per head, and final validation loss by size x n, from metrics.json.

Not a claim: the paper gives no loss number for n>1 vs n=1 (Fig. 3 plots benchmark scores), and metrics.json
holds no per-item losses for an interval; the val_loss table shows the numbers.
"""
from mtp import head_types
from mtp.report.figures import by, figure_no_data, grid, legend, save
from mtp.report.study import num, order, result_files


def val_loss_rows(records):
    rows = []
    for r in sorted(records, key=order):
        m = r.results["metrics"]
        if m is None:
            continue
        heads = {f"val_loss_head_{i}": num(m.at(f"val_loss_head_{i}")) for i in range(1, r.n_heads + 1)}
        rows.append({"dataset": r.dataset, "size": r.slot, "params_non_embedding": m.params_non_embedding,
                     "n": r.n_heads, "steps": m.steps, "tokens_seen": m.tokens_seen,
                     "val_bits_per_byte": num(m.val_bits_per_byte), **heads})
    return rows


def plot_loss_curves(records, path):
    have = [r for r in sorted(records, key=order)
            if r.results["metrics"] is not None and r.results["metrics"].history is not None
            and r.results["metrics"].history.step]
    if not have:
        return figure_no_data(path, "Training loss per head", f"no {result_files()['metrics']} with a history")
    fig, axes = grid(len(have), ncols=4, w=4.2, h=3.2)
    for ax, r in zip(axes, have):
        m = r.results["metrics"]
        h, v = m.history, m.val_history
        for i in range(1, r.n_heads + 1):
            loss = h.at(f"loss_head_{i}") or []
            if len(loss) != len(h.step):
                continue
            line, = ax.plot(h.step, loss, lw=1.2, label=f"head {i}")
            val = (v.at(f"val_loss_head_{i}") or []) if v is not None else []
            if val and len(val) == len(v.step):
                ax.plot(v.step, val, "o", color=line.get_color(), ms=4)
        ax.set_title(r.name, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.grid(alpha=0.3)
        legend(ax, fontsize=7, ncol=2 if r.n_heads > 2 else 1)
    fig.suptitle("Training (lines) and validation (dots) loss per head", y=1.0)
    fig.tight_layout()
    save(fig, path)


def plot_val_loss(records, path):
    rows = [r for r in records if r.results["metrics"] is not None
            and num(r.results["metrics"].val_bits_per_byte) is not None]
    if not rows:
        return figure_no_data(path, "Final validation loss", f"no {result_files()['metrics']}")
    groups = by(rows, lambda r: r.dataset)
    fig, axes = grid(len(groups), ncols=3, w=5.0)
    for ax, (ds, rs) in zip(axes, sorted(groups.items())):
        for (n, kind), line in sorted(by(rs, lambda r: (r.n_heads, variant(r))).items()):
            # one line per n and head type (and heads added to a model): a size's seeds are its points, the line
            # goes through their mean
            xs = sorted({r.params for r in line})
            ys = {x: [r.results["metrics"].val_bits_per_byte for r in line if r.params == x] for x in xs}
            drawn = ax.plot(xs, [sum(ys[x]) / len(ys[x]) for x in xs], "o-", label=f"n={n}{kind}")
            seeds = [(x, y) for x in xs for y in ys[x] if len(ys[x]) > 1]
            if seeds:
                ax.plot(*zip(*seeds), ".", color=drawn[0].get_color(), alpha=0.6)
        ax.set_xscale("log")
        ax.set_title(f"{ds}: head-1 validation loss")
        ax.set_xlabel("model size (non-embedding parameters)")
        ax.set_ylabel("validation loss (bits per byte)")
        ax.grid(alpha=0.3, which="both")
        legend(ax, title="heads")
    fig.tight_layout()
    save(fig, path)


def variant(r):
    """What tells apart models of one size and n in a legend: ' <head type>' (none for the paper's heads), ' added'
    when the heads were added to an existing model (init_from)."""
    return ("" if r.head_type == head_types.PAPER else f" {r.head_type}") + (" added" if r.init_from else "")
