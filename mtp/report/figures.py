"""What every figure shares: matplotlib (Agg, imported on first use), atomic PNG writes, "no data" panels, grids
of panels, legends, grouping rows into lines."""
import math

from mtp.io import atomic_path


def plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt().close(fig)


def no_data(ax, title, reason):
    ax.set_title(title)
    ax.text(0.5, 0.5, f"no data\n{reason}", ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def figure_no_data(path, title, reason):
    fig, ax = plt().subplots(figsize=(6, 3))
    no_data(ax, title, reason)
    save(fig, path)


def grid(count, ncols=3, w=5.0, h=3.6):
    """A figure of `count` panels, `ncols` per row: (figure, [axes])."""
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    fig, axes = plt().subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[count:]:
        a.set_visible(False)
    return fig, flat[:count]


def legend(ax, **kw):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def by(rows, key):
    """{key(x): [x, ...]} in first-seen order."""
    out = {}
    for x in rows:
        out.setdefault(key(x), []).append(x)
    return out
