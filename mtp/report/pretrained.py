"""Heads added to a model that exists (init_from: mtp:, hf:, gguf:; issue #23): per model, what the heads bought for
the source model. Rows: training minutes, each new head's validation agreement with head 1 (train.targets greedy's
teacher-forced stand-in for acceptance), the native acceptance per draft position and tokens per forward, tokens per
forward and speed-up in vLLM at every k served, against ngram, native speed-up, and the code benchmarks' pass@1 with
whether speculative decoding gave the same completions as greedy (eval.code.check_lossless). The figure: agreement
per head against training minutes, with the acceptance measured when decoding at the end. Speed figures of
degenerate output are left out (mtp.report.study.output_check), as in the speculative section."""
from mtp.report.figures import figure_no_data, grid, legend, save
from mtp.report.code import benchmarks
from mtp.report.study import num, output_check, result_files
from mtp.result_types import Metrics
from mtp.report.vllm import crosscheck_ok, vllm_runs


def _training(r, row):
    m = r.results["metrics"] or Metrics()
    walls = _walls(m)
    row.update({"steps": m.steps, "tokens_seen": m.tokens_seen,
                "train_minutes": num(walls[-1]) / 60 if walls and num(walls[-1]) is not None else None})
    for i in range(2, r.n_heads + 1):
        row[f"val_agree_head_{i}"] = num(m.at(f"val_agree_head_{i}"))


def _walls(m):
    """The training wall seconds at each validation of metrics `m` ([] without)."""
    return (m.val_history.wall_s or []) if m is not None and m.val_history is not None else []


def _native(r, row):
    d = r.results["decode"]
    per_batch = sorted(d.per_batch if d is not None else [], key=lambda b: b.batch_size or 0)
    if output_check(r, "decode") != "ok" or not per_batch:
        return
    rates = per_batch[0].spec.accept_rate_per_pos if per_batch[0].spec is not None else None
    row["accept_rate_per_pos"] = " ".join(f"{a:.2f}" for a in rates) if isinstance(rates, list) else None
    row["tokens_per_forward"] = num(per_batch[0].tokens_per_forward)
    for b in per_batch:
        row[f"native_speedup_b{b.batch_size}"] = num(b.speedup)


def _vllm(r, row):
    if output_check(r, "vllm") != "ok":
        return
    for x in vllm_runs(r.results["vllm"]):
        if x["method"] == "mtp":
            if x["batch_size"] == 1:
                row[f"vllm_k{x['k']}_tokens_per_forward"] = x["tokens_per_forward"]
            row[f"vllm_k{x['k']}_speedup_b{x['batch_size']}"] = x["speedup"]
        elif x["method"] != "none":
            row[f"vllm_{x['method']}_speedup_b{x['batch_size']}"] = x["speedup"]
    row["vllm_equals_native"] = crosscheck_ok(r.results["vllm"])


def _code(r, row):
    for bench, res in benchmarks(r).items():
        row[f"{bench}_pass_at_1"] = num(res.pass_at(1))
        row[f"{bench}_problems"] = res.num_problems
        row[f"{bench}_speculative_equals_greedy"] = res.speculative_identical


def pretrained_rows(records):
    """One row per model whose heads were added to a model that exists (its init_from)."""
    rows = []
    for r in records:
        if not r.init_from:
            continue
        row = {"model": r.name, "source": r.init_from, "head_type": r.head_type, "n": r.n_heads}
        for part in (_training, _native, _vllm, _code):
            part(r, row)
        rows.append(row)
    return rows


def plot_pretrained(records, path):
    """Per model: each new head's validation agreement with head 1 against training minutes (lines), and the
    acceptance per draft position measured when decoding (crosses at the last minute)."""
    have = [r for r in records if r.init_from and _walls(r.results["metrics"])]
    if not have:
        return figure_no_data(path, "Heads on a pretrained model", f"no {result_files()['metrics']} of a model with init_from")
    fig, axes = grid(len(have), ncols=2, w=6.0, h=4.0)
    for ax, r in zip(axes, have):
        v = r.results["metrics"].val_history
        minutes = [w / 60 for w in v.wall_s]
        row = {}
        _native(r, row)
        rates = [float(a) for a in (row.get("accept_rate_per_pos") or "").split()]
        for i in range(2, r.n_heads + 1):
            agree = v.at(f"val_agree_head_{i}") or []
            if len(agree) != len(minutes):
                continue
            line, = ax.plot(minutes, agree, "o-", ms=3, label=f"head {i} (t+{i}) vs head 1")
            if len(rates) >= i - 1:
                ax.plot([minutes[-1]], [rates[i - 2]], "x", ms=9, color=line.get_color())
        ax.set_title(f"{r.name}\n(x: acceptance at draft position when decoding)", fontsize=10)
        ax.set_xlabel("training minutes")
        ax.set_ylabel("agreement with head 1's greedy token")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        legend(ax, fontsize=8)
    fig.tight_layout()
    save(fig, path)
