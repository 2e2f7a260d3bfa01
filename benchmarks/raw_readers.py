"""Reading and formatting the raw files under benchmarks/results/ for benchmarks/raw_numbers.py (its docstring says
what the keys are): readers of decode.json, vllm.json, the report's tables and study folders, one format per kind
of number."""
import csv
import gzip
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "benchmarks" / "results"


# ---- reading raw files

def load(path):
    """A .json, .json.gz or .jsonl file (a .jsonl gives the list of its JSON lines; other lines are skipped)."""
    path = Path(path)
    text = gzip.open(path, "rt").read() if path.suffix == ".gz" else path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return json.loads(text)


def rows(path):
    """The rows of a report table as dicts of strings: the .csv, or the .md where no csv was kept."""
    path = Path(path)
    if path.with_suffix(".csv").exists():
        return list(csv.DictReader(path.with_suffix(".csv").open()))
    lines = [line for line in path.with_suffix(".md").read_text().splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines if not line.startswith("|---")]
    return [{k: ("" if v == "-" else v) for k, v in zip(cells[0], r)} for r in cells[1:]]


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


# ---- formatting: one format per kind of number

def fmt(x, d=2):
    return f"{x:.{d}f}"


def signed(x, d=3):
    return f"{x:+.{d}f}".replace("-", "−")


def span(lo, hi, d=2):
    return f"{lo:.{d}f}–{hi:.{d}f}"


def cell(text, d=2, sign=False):
    """A report table's cell to d decimals; kept as printed where its last digit is the 5 that rounding would split
    (an .md cell holds 4 significant digits: 1.515 may be 1.5149 or 1.5151)."""
    frac = text.partition(".")[2]
    out = text if len(frac) == d + 1 and frac.endswith("5") else f"{float(text):.{d}f}"
    return (out if out.startswith("-") else "+" + out).replace("-", "−") if sign else out


def tps(x):
    """Tokens per second: 1 decimal below 100, none above."""
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def per_pos(rates):
    return " / ".join(fmt(r) for r in rates)


def commas(n):
    return f"{int(n):,}"


def table(header, body):
    """A Markdown table as the value of a block marker (starts and ends with a newline)."""
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n" + "\n".join(lines) + "\n"


# ---- shared readers: decode.json, vllm.json, the report's tables, a study folder

def speed_keys(q, speedup, spread):
    k = {q: fmt(speedup)} if speedup is not None else {}
    if spread:
        k[q + ".range"] = span(spread["min"], spread["max"])
    return k


def speed_cell(speedup, spread):
    """A table cell "1.49 [1.40–1.57]", with " unstable" where the rounds disagree by more than 25 %."""
    return f"{fmt(speedup)} [{span(spread['min'], spread['max'])}]" + (" unstable" if spread["unstable"] else "")


def decode_keys(p, d):
    """Keys of one decode.json (native decoding) under p."""
    k = {f"{p}.degenerate": str(d["quality"]["degenerate_prompts"])}
    for b in d.get("per_batch", []):
        q = f"{p}.b{b['batch_size']}"
        k.update(speed_keys(q, b["speedup"], b["speedup_spread"]))
        k[q + ".tps"], k[q + ".greedy_tps"] = tps(b["spec"]["tokens_per_s"]), tps(b["ar"]["tokens_per_s"])
        k[p + ".tpf"], k[p + ".accept"] = fmt(b["tokens_per_forward"]), per_pos(b["spec"]["accept_rate_per_pos"])
    if d.get("sampling"):
        s = d["sampling"]
        k.update(speed_keys(p + ".sampling", s["speedup"], s["speedup_spread"]))
        k[p + ".sampling.tpf"] = fmt(s["tokens_per_forward"])
    return k


def vllm_keys(p, d):
    """Keys of one vllm.json under p: p.vllm.<config>.b<batch> (.range .tps), p.vllm.<config>.tpf."""
    k = {}
    for c in d["configs"]:
        for b in c["per_batch"]:
            q = f"{p}.vllm.{c['name']}.b{b['batch_size']}"
            k.update(speed_keys(q, b["speedup"], b["speedup_spread"]))
            k[q + ".tps"] = tps(b["tokens_per_s"])
            if b["mean_acceptance_length"]:
                k[f"{p}.vllm.{c['name']}.tpf"] = fmt(b["mean_acceptance_length"])
    return k


def vllm_table(d):
    """vllm.json as the table RESULTS.md shows: one row per configuration, batch 1 and 8."""
    draft = (d.get("draft_model") or "").split("/")[-1]
    label = {"nospec": "no speculation", "ngram": "ngram (k = {k})",
             "draft": f"draft model {draft} (k = {{k}})"}
    body = []
    for c in d["configs"]:
        cells = [label.get(c["name"], "our heads, k = {k}").format(k=c["k"])]
        for b in c["per_batch"]:
            spread = b["speedup_spread"]
            cells += [tps(b["tokens_per_s"]), speed_cell(b["speedup"], spread) if spread else "1"]
        accepted = c["per_batch"][0]["mean_acceptance_length"]
        body.append(cells + [fmt(accepted) if accepted else "1"])
    return table("| configuration | b1 tok/s | b1 speed-up [min–max] | b8 tok/s | b8 speed-up [min–max] "
                 "| tokens/forward |", body)


VLLM_NAMES = {"none": "nospec", "ngram": "ngram", "draft_model": "draft"}


def table_keys(run, table):
    """The report's speculative table: the keys of decode_keys and vllm_keys (from 4-digit cells where only the
    .md was kept; no speed-up where the report withheld it, the range stays)."""
    k = {}
    for r in table:
        p, bs, method = model_id(run, r), r["batch_size"], r["method"]
        degenerate = re.search(r"(\d+) of \d+ continuations", r["output"])
        if degenerate:
            k[p + ".degenerate"] = degenerate.group(1)
        if method == "autoregressive":
            k[f"{p}.b{bs}.greedy_tps"] = tps(number(r["tokens_per_s"]))
            continue
        if r["engine"] == "vllm":
            name = VLLM_NAMES.get(method, f"heads_k{r['draft_tokens']}")
            q, tpf = f"{p}.vllm.{name}.b{bs}", f"{p}.vllm.{name}.tpf"
        elif method == "self-speculative":
            q, tpf = f"{p}.b{bs}", p + ".tpf"
            k[p + ".accept"] = r["accept_rate_per_pos"].replace(" ", " / ")
        elif method.startswith("speculative sampling"):
            q, tpf = p + ".sampling", p + ".sampling.tpf"
        else:
            continue
        if number(r["speedup"]) is not None:
            k[q] = cell(r["speedup"])
        if r["speedup_min"]:
            k[q + ".range"] = f"{cell(r['speedup_min'])}–{cell(r['speedup_max'])}"
        k[q + ".tps"] = tps(number(r["tokens_per_s"]))
        if method != "none" and number(r["tokens_per_forward"]):
            k[tpf] = cell(r["tokens_per_forward"])
    return k


def study_time(path):
    """The JSON line of study_time.txt (benchmarks/study_time.py)."""
    return json.loads([line for line in Path(path).read_text().splitlines() if line.startswith("{")][-1])


def elapsed_minutes(log_text):
    """Snakemake's "Elapsed time: H:MM:SS.ffffff" -> minutes."""
    h, m, s = re.search(r"Elapsed time: (\d+):(\d+):([\d.]+)", log_text).groups()
    return int(h) * 60 + int(m) + float(s) / 60


def study_time_keys(run, path):
    st = study_time(path)
    rules = {r: v for r, v in st["rules"].items() if r != "all"}
    body = [[r, v["jobs"], fmt(v["job_minutes"]), fmt(v["longest_minutes"])]
            for r, v in sorted(rules.items(), key=lambda kv: -kv[1]["job_minutes"])]
    total = f"**{st['total_minutes']:g} min**"
    body.append(["**total wall clock**", sum(v["jobs"] for v in rules.values()), "", total])
    k = {f"{run}.minutes": fmt(st["total_minutes"], 1),
         f"{run}.rules": table("| rule | jobs | job-minutes | longest |", body)}
    for rule, short in (("train_model", "train"), ("time_vllm", "vllm")):
        k[f"{run}.{short}.job_minutes"] = fmt(rules[rule]["job_minutes"], 1)
        k[f"{run}.{short}.longest"] = fmt(rules[rule]["longest_minutes"], 1)
    return k


def model_id(run, r):
    return f"{run}.{r['dataset']}/{r['size']}-n{r['n']}"


def induction_keys(run, table):
    """The report's induction table: accuracy, and the paired difference to n = 1 with its 95 % interval."""
    k = {}
    for r in table:
        k[model_id(run, r) + ".induction"] = cell(r["accuracy"], 3)
        if r["diff_vs_n1"]:
            k[model_id(run, r) + ".diff"] = cell(r["diff_vs_n1"], 3, sign=True)
            k[model_id(run, r) + ".ci"] = f"[{cell(r['ci95_lo'], 3, True)}, {cell(r['ci95_hi'], 3, True)}]"
    return k


def study_keys(run, folder):
    """Every key of a default-study folder: report tables, the deep models' decode.json / vllm.json, study time."""
    k = table_keys(run, rows(folder / "speculative.md"))
    for model in ("deep-n1", "deep-n4"):
        if (folder / f"{model}.decode.json.gz").exists():
            k.update(decode_keys(f"{run}.code-bytes/{model}", load(folder / f"{model}.decode.json.gz")))
    if (folder / "deep-n4.vllm.json.gz").exists():
        k.update(vllm_keys(f"{run}.code-bytes/deep-n4", load(folder / "deep-n4.vllm.json.gz")))
        k[f"{run}.vllm_table"] = vllm_table(load(folder / "deep-n4.vllm.json.gz"))
    if (folder / "val_loss.md").exists():
        for r in rows(folder / "val_loss.md"):
            k[model_id(run, r) + ".bpb"] = cell(r["val_bits_per_byte"], 3)
            k[model_id(run, r) + ".loss"] = cell(r["val_loss_head_1"], 3)
    k.update(induction_keys(run, rows(folder / "induction.md")))
    if (folder / "polynomial.md").exists():
        for r in rows(folder / "polynomial.md"):
            if r["m"] == "1":
                k[model_id(run, r) + ".poly_m1"] = cell(r["accuracy"], 3)
    if (folder / "code.md").exists():
        k[f"{run}.pass1_max"] = fmt(max(float(r["pass_at_k"]) for r in rows(folder / "code.md")), 1)
    if (folder / "study_time.txt").exists():
        k.update(study_time_keys(run, folder / "study_time.txt"))
    return k


def bench_keys(run, folder):
    """`mtp bench decode` / `mtp bench vllm` run right after a study (bench_decode.jsonl, bench_vllm.jsonl)."""
    dec, vl = load(folder / "bench_decode.jsonl")[0], load(folder / "bench_vllm.jsonl")[0]
    k = {f"{run}.bench.decode.b1": fmt(dec["speedup_b1"]), f"{run}.bench.decode.b8": fmt(dec["speedup_b8"]),
         f"{run}.bench.decode.tpf": fmt(dec["tokens_per_forward_b1"])}
    for name in ("heads", "ngram", "draft"):
        for b in ("b1", "b8"):
            k[f"{run}.bench.vllm.{name}.{b}"] = fmt(vl[f"{name}_vs_nospec_{b}"])
            k[f"{run}.bench.vllm.{name}.{b}.spread"] = fmt(vl[f"{name}_vs_nospec_spread_{b}"] * 100, 0) + "%"
    return k


def metrics_keys(p, m):
    """Keys of one metrics.json (training) under p."""
    return {p + ".bpb": fmt(m["val_bits_per_byte"], 3), p + ".loss": fmt(m["val_loss_head_1"], 3),
            p + ".step_s": fmt(m["step_time_s"], 3), p + ".peak_mb": fmt(m["peak_mem_bytes"] / 2 ** 20, 0),
            p + ".train_s": fmt(m["wall_s"], 0), p + ".params": commas(m["params_total"])}


def heads_keys(run, table):
    """The report's heads table: params, step time and peak memory per model (transformer heads: size-n<n>)."""
    k = {}
    for r in table:
        kind = "" if r["head_type"] == "transformer" else r["head_type"] + "-"
        p = f"{run}.{r['dataset']}/{r['preset']}-{kind}n{r['n']}"
        k[p + ".step_s"], k[p + ".peak_mb"] = fmt(float(r["step_time_s"]), 3), fmt(float(r["peak_mem_mb"]), 0)
        if r.get("params"):
            k[p + ".params"] = commas(r["params"])
    return k
