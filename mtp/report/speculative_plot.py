"""The speculative-decoding figure: tokens per forward and speed-up by heads used, native and inside vLLM, from the
rows of mtp.report.speculative; speed-ups with the min-max of their timing rounds, hollow where those disagree."""
from mtp.report.figures import by, figure_no_data, legend, no_data, plt, save
from mtp.report.speculative import COUNTED, model_label, smallest_batch, speculative_rows
from mtp.report.study import num, result_files
from mtp.serving.baselines import VLLM_BASELINES


def plot_speculative(records, path):
    rows = speculative_rows(records)
    if not rows:
        files = result_files()
        return figure_no_data(path, "Speculative decoding", f"no {files['decode']} or {files['vllm']}")
    fig, axes = plt().subplots(2, 2, figsize=(11, 8), squeeze=False)
    for row, engine in enumerate(("native", "vllm")):
        name = "native engine" if engine == "native" else "vLLM"
        for col, (metric, label) in enumerate((("tokens_per_forward", "tokens per forward"),
                                               ("speedup", "speed-up vs no speculation (x)"))):
            xs = _panel_rows(rows, engine, metric)
            bs = smallest_batch(xs)
            xs = [x for x in xs if x["batch_size"] == bs]
            title = f"{name}: {label.split(' (')[0]} (batch {bs})"
            _panel(axes[row][col], xs, engine, metric, label, title)
    fig.tight_layout()
    save(fig, path)


def _panel_rows(rows, engine, metric):
    """The rows of one panel: native tokens per forward from the runs at every k (per model, with its
    autoregressive 1.0), native speed-ups from the timed runs (per size, across n); vLLM's rows as they are."""
    xs = [x for x in rows if x["engine"] == engine]
    if engine == "vllm":
        return xs
    methods = ("autoregressive", COUNTED) if metric == "tokens_per_forward" else ("autoregressive", "self-speculative")
    return [x for x in xs if x["method"] in methods]


def _panel(ax, xs, engine, metric, label, title):
    """One engine's `metric` by heads used, at one batch size: a line per model (per size for the native speed-up,
    across n), the vLLM baselines as markers, and the models left out (degenerate output) named."""
    if not xs:
        no_data(ax, title, f"no {result_files()['decode' if engine == 'native' else 'vllm']}")
        return
    colors = _own_heads(ax, xs, engine, metric)
    if engine == "vllm":
        _baselines(ax, xs, metric, colors)
    note = _left_out(xs)
    if not ax.lines:  # every model left out: say why instead of an empty frame
        no_data(ax, title, note or "fewer than two points per model")
        return
    if note:
        ax.text(0.02, 0.02, note, transform=ax.transAxes, fontsize=6, va="bottom", wrap=True)
    ax.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax.set_title(title)
    ax.set_xlabel("heads used (drafted tokens + 1)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if metric == "speedup":
        ax.plot([], [], "o", color="gray", mfc="none", label="hollow: rounds disagree > 25% (unstable); bar: min-max")
    legend(ax, fontsize=7)


def _own_heads(ax, xs, engine, metric):
    """Lines of our heads (at least two points each); {model: its line's color}."""
    if engine == "native" and metric == "speedup":
        lines = by([x for x in xs if x["heads_used"]], lambda x: f"{x['dataset']}/{x['size']}")
    else:
        lines = by([x for x in xs if x["heads_used"]], model_label)
    colors = {}
    for g, ps in sorted(lines.items()):
        pts = sorted({x["heads_used"]: x for x in ps if num(x[metric]) is not None}.items())
        if len(pts) >= 2:
            ln, = ax.plot([h for h, _ in pts], [x[metric] for _, x in pts], "-",
                          label=f"{g} own heads" if engine == "vllm" else g)
            colors[g] = ln.get_color()
            for h, x in pts:
                _point(ax, h, x, metric, colors[g], "o")
    return colors


def _point(ax, at, x, metric, color, marker, ms=6):
    """One measurement; a speed-up with the min-max of its rounds as a bar, hollow where they disagree (unstable)."""
    unstable = metric == "speedup" and (x.get("timing") or "").startswith("unstable")
    ax.plot(at, x[metric], marker, color=color, ms=ms, mfc="none" if unstable else color)
    if metric == "speedup" and x.get("speedup_min") is not None:
        ax.vlines(at, x["speedup_min"], x["speedup_max"], color=color, lw=1, alpha=0.6)


def _baselines(ax, xs, metric, colors):
    """vLLM's baseline runs (ngram, draft model, ...) as markers at drafts + 1, in the color of their model's line."""
    for method, marker in {b.method: b.marker for b in VLLM_BASELINES.values()}.items():
        ps = [x for x in xs if x["method"] == method and num(x[metric]) is not None
              and isinstance(x["draft_tokens"], int)]
        for x in ps:
            _point(ax, x["draft_tokens"] + 1, x, metric, colors.get(model_label(x), "black"), marker, ms=8)
        if ps:
            ax.plot([], [], marker, color="gray", label=f"{method} baseline (x = drafts + 1)")


def _left_out(xs):
    """The note naming the models not plotted, per reason (degenerate output, unchecked)."""
    left_out = {}
    for x in xs:
        if x["output"] not in (None, "ok"):
            why = x["output"].split(" (")[0].removeprefix("no data: ")
            left_out.setdefault(why, set()).add(model_label(x))
    return "\n".join(f"left out, {why}: " + ", ".join(sorted(ms)) for why, ms in sorted(left_out.items()))
