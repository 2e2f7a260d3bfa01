"""Code benchmarks (Table S7 analogue): pass@k by size x n from eval_code.json, each n>1 model paired with the n=1
model of its size over problems, and the claim that small models lose pass@1 with n > 1."""
from mtp.report.figures import by, figure_no_data, grid, legend, save
from mtp.report.study import baseline, num, order, pairs, result_files, seed_groups
from mtp.report.verdicts import ci_cols, ci_parts, claim, paired_ci, runs_text, seeds_ci, verdict_paired

# Paper, Fig. 3: n=4 hurts at 0.3B-0.6B, breaks even near 1.3B; "small" = below the 1.3B break-even.
SMALL_MAX_PARAMS = 1.0e9

PAPER_SMALL_PASS = ("n=4 hurts MBPP/HumanEval at 0.3B-0.6B, breaks even near 1.3B; 13B: +17% MBPP@1, +12% "
                    "HumanEval@1 (Fig. 3)")


def code_items(r, bench, k):
    """{task_id: pass@k of that problem} from eval_code.json's per-problem (n, correct), or None."""
    from mtp.evals.passk import pass_at_k
    scores, out = benchmarks(r), {}
    for p in scores[bench].problems if bench in scores else ():
        n, c = p.n, p.correct
        if isinstance(n, int) and isinstance(c, int) and 0 <= c <= n and n >= k:
            out[p.task_id] = pass_at_k(n, c, k)
    return out or None


def benchmarks(r):
    """{benchmark: mtp.result_types.BenchmarkScore} of r's eval_code.json ({} without one)."""
    e = r.results["code"]
    return e.benchmarks if e is not None else {}


def code_rows(records):
    """pass@k per model, benchmark and k, with the paired interval of pass@k(n) - pass@k(n=1) over problems."""
    rows = []
    for r in sorted(records, key=order):
        base = baseline(records, r)
        for bench, res in benchmarks(r).items():
            for key, v in res.pass_at_k.items():
                k = int(key.split("@")[-1])
                ci = paired_ci(code_items(r, bench, k), code_items(base, bench, k)) if base and r.n_heads > 1 else None
                rows.append({"dataset": r.dataset, "size": r.slot, "params_non_embedding": r.params,
                             "n": r.n_heads, "benchmark": bench, "k": k, "pass_at_k": num(v),
                             "problems": res.num_problems, **ci_cols(ci)})
    return sorted(rows, key=lambda x: (x["dataset"], x["params_non_embedding"], x["size"], x["n"], x["benchmark"],
                                       x["k"]))


def claim_small_pass(records):
    """pass@1 of n=1 minus that of n>1 (positive: the paper's direction, n>1 hurts small models), per benchmark,
    over training seeds."""
    small = [r for r in records if r.task == "code" and r.params < SMALL_MAX_PARAMS]
    benches = sorted({b for r in small for b in benchmarks(r)})
    cis, used = [], []
    for bench in benches:
        both = [(r, b) for r, b in pairs(small) if bench in benchmarks(r) and bench in benchmarks(b)]
        used += [x for pair in both for x in pair]
        for label, group in seed_groups(both).items():
            cis.append((f"{bench} {label}",
                        seeds_ci([(code_items(b, bench, 1), code_items(r, bench, 1)) for r, b in group])))
    ours = f"pass@1(n=1) - pass@1(n>1), paired over problems: {ci_parts(cis)}" if cis else "-"
    return claim("Small models lose pass@1 with n > 1", PAPER_SMALL_PASS, ours, verdict_paired,
                 ([ci for _, ci in cis],), runs=runs_text(used))


def plot_code(records, path):
    rows = code_rows(records)
    if not rows:
        return figure_no_data(path, "Code benchmarks", f"no {result_files()['code']}")
    benches = sorted({x["benchmark"] for x in rows})
    fig, axes = grid(len(benches), ncols=2, w=5.5)
    for ax, bench in zip(axes, benches):
        xs = [x for x in rows if x["benchmark"] == bench and x["pass_at_k"] is not None]
        k = min((x["k"] for x in xs), default=1)
        for g, ps in sorted(by([x for x in xs if x["k"] == k], lambda x: (x["dataset"], x["n"])).items()):
            ps = sorted(ps, key=lambda x: x["params_non_embedding"])
            ax.plot([x["params_non_embedding"] for x in ps], [100 * x["pass_at_k"] for x in ps], "o-",
                    label=f"{g[0]} n={g[1]}")
        ax.set_xscale("log")
        ax.set_title(f"{bench}: pass@{k}")
        ax.set_xlabel("model size (non-embedding parameters)")
        ax.set_ylabel(f"pass@{k} (%)")
        ax.grid(alpha=0.3, which="both")
        legend(ax, fontsize=8)
    fig.tight_layout()
    save(fig, path)
