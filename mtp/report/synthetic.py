"""Synthetic tasks: polynomial arithmetic by number of operations m (Fig. 8 analogue, eval_polynomial.json) and
induction by size x n (Fig. 7 analogue, eval_induction.json), each n>1 model paired with the n=1 model of its
size over test items, and their claims."""
from mtp.report.figures import by, figure_no_data, grid, legend, plt, save
from mtp.report.study import baseline, num, order, pairs, result_files, seed_groups
from mtp.report.verdicts import (CONTRADICTED, INCONCLUSIVE, MIN_SEEDS, NO_DATA, REPRODUCED, ci_cols, ci_parts,
                                 claim, paired_ci, runs_text, seeds_ci, verdict_paired)

# Paper, Fig. 7: n=2 beats n=1 at <= 30M parameters; 35M because our 30M preset has ~31.6M non-embedding ones.
INDUCTION_MAX_PARAMS = 35e6

PAPER_INDUCTION = "n=2 beats n=1 clearly at <= 30M parameters (Fig. 7)"
PAPER_POLYNOMIAL = "n>1 beats n=1 at every number of operations m, in and out of domain (Fig. 8)"


def verdict_every_m(intervals_by_m):
    """intervals_by_m: {m: [95% interval of accuracy(n>1) - accuracy(n=1) over training seeds, one per model
    pair]}, each m judged by verdict_paired; with fewer than 3 seeds the whole claim is "exploratory" (as
    verdict_paired). Reproduced when every m is reproduced; contradicted when more than half of the m are
    contradicted and none reproduced; inconclusive otherwise (naming the intervals that include 0); no data
    without an interval."""
    every = [c for cis in intervals_by_m.values() for c in cis if c is not None]
    if every and min(c.get("seeds", 1) for c in every) < MIN_SEEDS:
        return verdict_paired(every)  # exploratory: too few training seeds
    per_m = {m: verdict_paired(cis) for m, cis in intervals_by_m.items()}
    per_m = {m: v for m, v in per_m.items() if v != NO_DATA}
    if not per_m:
        return NO_DATA
    if all(v == REPRODUCED for v in per_m.values()):
        return REPRODUCED
    if sum(v == CONTRADICTED for v in per_m.values()) > len(per_m) / 2 and REPRODUCED not in per_m.values():
        return CONTRADICTED
    open_m = [m for m, v in sorted(per_m.items()) if v.startswith(INCONCLUSIVE)]
    if not open_m:
        return f"{INCONCLUSIVE} (m differ in direction)"
    return f"{INCONCLUSIVE} (" + "; ".join(f"m={m}: {per_m[m][len(INCONCLUSIVE) + 2:-1]}" for m in open_m) + ")"


# ---- polynomial arithmetic

def polynomial_items(r, m):
    """{(seed, i): 0/1} of eval_polynomial.json's correct_by_m[m] (item i of test_set(m, num_tests, seed)), or None."""
    e = r.results["polynomial"]
    v = e.correct_at(m) if e is not None else None
    return {(e.items_seed, i): c for i, c in enumerate(v)} if isinstance(v, list) and v else None


def polynomial_rows(records):
    """Exact-match accuracy per model and m, with the paired interval of accuracy(n) - accuracy(n=1) over items."""
    rows = []
    for r in sorted(records, key=order):
        e = r.results["polynomial"]
        if not e:
            continue
        base = baseline(records, r)
        train_max = e.max_ops_train if e.max_ops_train is not None else 5
        for m, acc in sorted(e.accuracy_by_m.items(), key=lambda kv: int(kv[0])):
            ci = paired_ci(polynomial_items(r, m), polynomial_items(base, m)) if base and r.n_heads > 1 else None
            rows.append({"dataset": r.dataset, "size": r.slot, "n": r.n_heads, "m": int(m),
                         "domain": "in" if int(m) <= train_max else "out", "accuracy": num(acc),
                         "num_tests": e.num_tests, **ci_cols(ci)})
    return rows


def _by_m(r):
    """r's polynomial accuracy by m ({} without an eval_polynomial.json)."""
    e = r.results["polynomial"]
    return e.accuracy_by_m if e is not None else {}


def claim_polynomial(records):
    by_m, parts, used = {}, [], []
    both = [(r, b) for r, b in pairs(records) if _by_m(r) and _by_m(b)]
    for label, group in seed_groups(both).items():
        used += [x for pair in group for x in pair]
        for m in sorted(_by_m(group[0][0]), key=int):
            ci = seeds_ci([(polynomial_items(r, m), polynomial_items(b, m)) for r, b in group])
            by_m.setdefault(int(m), []).append(ci)
            parts.append((f"{label} m={m}", ci))
    ours = f"accuracy(n>1) - accuracy(n=1), paired over test items: {ci_parts(parts)}" if parts else "-"
    return claim("n > 1 helps polynomial arithmetic at every m", PAPER_POLYNOMIAL, ours, verdict_every_m, (by_m,),
                 runs=runs_text(used))


def plot_polynomial(records, path):
    rows = [x for x in polynomial_rows(records) if x["accuracy"] is not None]
    if not rows:
        return figure_no_data(path, "Polynomial arithmetic", f"no {result_files()['polynomial']}")
    groups = by(rows, lambda x: f"{x['dataset']}/{x['size']}")
    fig, axes = grid(len(groups), ncols=3, w=5.0)
    for ax, (g, xs) in zip(axes, sorted(groups.items())):
        for n, ps in sorted(by(xs, lambda x: x["n"]).items()):
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
        legend(ax, fontsize=8)
    fig.tight_layout()
    save(fig, path)


# ---- induction

def induction_items(r):
    """{(seed, i): (correct, scored)} per test story of eval_induction.json's correct_by_story, or None."""
    e = r.results["induction"]
    v = e.correct_by_story if e is not None else None
    if not isinstance(v, list) or not v:
        return None
    return {(e.items_seed, i): (sum(s), len(s)) for i, s in enumerate(v) if isinstance(s, list)}


def induction_rows(records):
    """Induction accuracy per model, with the paired interval of accuracy(n) - accuracy(n=1) over stories."""
    rows = []
    for r in sorted(records, key=order):
        e = r.results["induction"]
        if not e:
            continue
        base = baseline(records, r)
        ci = paired_ci(induction_items(r), induction_items(base)) if base and r.n_heads > 1 else None
        rows.append({"dataset": r.dataset, "size": r.slot, "params_non_embedding": r.params, "n": r.n_heads,
                     "accuracy": num(e.metric("induction_acc")),
                     "scored_tokens": e.metric("induction_scored_tokens"), "num_tests": e.num_tests,
                     **ci_cols(ci)})
    return rows


def claim_induction(records):
    small = [r for r in records if r.params <= INDUCTION_MAX_PARAMS]
    both = [(r, b) for r, b in pairs(small) if r.results["induction"] and b.results["induction"]]
    groups = seed_groups(both)
    cis = [(label, seeds_ci([(induction_items(r), induction_items(b)) for r, b in group]))
           for label, group in groups.items()]
    ours = f"accuracy(n>1) - accuracy(n=1), paired over stories: {ci_parts(cis)}" if cis else "-"
    return claim("n > 1 helps induction at <= 30M parameters", PAPER_INDUCTION, ours, verdict_paired,
                 ([ci for _, ci in cis],), runs=runs_text([x for r, b in both for x in (r, b)]))


def plot_induction(records, path):
    rows = [x for x in induction_rows(records) if x["accuracy"] is not None]
    if not rows:
        return figure_no_data(path, "Induction", f"no {result_files()['induction']}")
    fig, ax = plt().subplots(figsize=(6, 4))
    for (ds, n), ps in sorted(by(rows, lambda x: (x["dataset"], x["n"])).items()):
        sizes = sorted(by(ps, lambda x: x["params_non_embedding"]).items())  # several training seeds per size
        line, = ax.plot([p for p, _ in sizes], [100 * sum(x["accuracy"] for x in xs) / len(xs) for _, xs in sizes],
                        "D-", ms=9, label=f"{ds} n={n} (diamond: mean over seeds; dots: each seed)")
        ax.plot([x["params_non_embedding"] for x in ps], [100 * x["accuracy"] for x in ps], "o",
                color=line.get_color(), alpha=0.7)
    ax.set_xscale("log")
    ax.set_title("Induction: accuracy on the 2nd token of a repeated name")
    ax.set_xlabel("model size (non-embedding parameters)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    legend(ax, fontsize=8)
    fig.tight_layout()
    save(fig, path)
