"""One function per raw folder (or file) under benchmarks/results/, each returning {key: text} for
benchmarks/raw_numbers.py; FOLDERS lists them."""
import gzip
import re

from raw_readers import (RAW, ROOT, bench_keys, decode_keys, elapsed_minutes, fmt, heads_keys, induction_keys, load,
                         metrics_keys, number, per_pos, rows, signed, span, speed_cell, study_keys, study_time,
                         study_time_keys, table, table_keys, tps, vllm_keys, vllm_table)
from raw_studies import (at_run_e_speed, attention_training, deep_b8, draft_baseline, medusa_vs_recursive, seeds_g, seeds_h, pooled_seeds, seeds_a, seeds_b, seeds_c, seeds_d, seeds_e,
                         train_minutes, vllm_stage_time)


def gpu_h100():
    """benchmarks/gpu_check_h100.jsonl: `bash benchmarks/gpu_check.sh` on an H100."""
    c = {r["check"]: r for r in load(ROOT / "benchmarks" / "gpu_check_h100.jsonl")}
    t, mem, dec = c["train_step_mfu"], c["peak_memory_vs_n"], c["spec_decode"]
    compiled_tflops = t["tflops_n1"] * t["step_s"]["n1"] / t["compiled_step_s"]
    k = {"h100.step_ms.compiled": fmt(t["compiled_step_s"] * 1000, 0), "h100.tflops.compiled": fmt(compiled_tflops, 0),
         "h100.mfu_spec.compiled": fmt(t["mfu_n1_compiled_vs_spec"]),
         "h100.mfu_peak.compiled": fmt(compiled_tflops / t["measured_matmul_peak_tflops"]),
         "h100.peak_tflops": fmt(t["measured_matmul_peak_tflops"], 0), "h100.compile_s": fmt(t["compile_s"], 0),
         "h100.time_ratio_n4_n1": fmt(t["time_ratio_n4_vs_n1"]), "h100.flop_ratio_n4_n1": fmt(t["flop_ratio_n4_vs_n1"]),
         "h100.vs_hf": fmt(t["throughput_vs_hf"]), "h100.step_ms.hf": fmt(t["step_s"]["hf"] * 1000, 0)}
    for n in ("n1", "n4"):
        k[f"h100.step_ms.{n}"] = fmt(t["step_s"][n] * 1000, 0)
        k[f"h100.tflops.{n}"] = fmt(t[f"tflops_{n}"], 0)
        k[f"h100.mfu_spec.{n}"] = fmt(t[f"mfu_{n}_vs_spec"])
        k[f"h100.mfu_peak.{n}"] = fmt(t[f"mfu_{n}_vs_measured_peak"])
    body = [[label] + [f"{mem[f'{kind}_n{n}_mb'] / 1000:.1f} GB" for n in (1, 2, 4, 8)]
            for label, kind in (("memory-efficient backward", "memory_efficient"), ("naive summed loss", "naive"))]
    k["h100.memory_table"] = table("| n | 1 | 2 | 4 | 8 |", body)
    k["h100.mem_ratio_n8_n1"] = fmt(mem["memory_efficient_n8_mb"] / mem["memory_efficient_n1_mb"])
    k["h100.naive_mem_ratio_n8_n1"] = fmt(mem["naive_n8_mb"] / mem["naive_n1_mb"])
    k["h100.decode.train_s"] = fmt(dec["train_s"], 0)
    for b in dec["per_batch"]:
        k[f"h100.decode.b{b['batch_size']}"] = fmt(b["speedup"])
        k["h100.decode.tpf"] = fmt(b["tokens_per_forward"])
    k["h100.decode.b1_per_tpf"] = fmt(dec["per_batch"][0]["speedup"] / dec["per_batch"][0]["tokens_per_forward"])
    return k


def cpu_bench():
    """bench_train_cpu_2026-11-29.jsonl: `mtp bench train` on the 2-core machine."""
    b = load(RAW / "bench_train_cpu_2026-11-29.jsonl")[0]
    k = {f"cpu.{key}": fmt(b[key]) for key in ("mem_ratio_n8_vs_n1", "naive_mem_ratio_n8_vs_n1", "time_ratio_n4_vs_n1",
                                               "flop_ratio_n4_vs_n1", "throughput_vs_hf", "flops_vs_peak",
                                               "achieved_tflops", "peak_matmul_tflops")}
    k["cpu.time_over_flop_pct"] = fmt((b["time_ratio_n4_vs_n1"] / b["flop_ratio_n4_vs_n1"] - 1) * 100, 0)
    return k


def head_types():
    """head-types-equal-params-2026-11-30/: configs/head-types.yaml after the default study's Run 4."""
    folder, run = RAW / "head-types-equal-params-2026-11-30", "head_types"
    k = study_time_keys(run, folder / "study_time.txt")
    k.update(table_keys(run, rows(folder / "speculative.md")))
    k.update(heads_keys(run, rows(folder / "heads.md")))
    k.update(induction_keys(run, rows(folder / "induction.md")))
    train_minutes = []
    for f in sorted(folder.glob("*.metrics.json")):
        p = f"{run}." + f.name.split(".")[0].replace("_", "/")
        m = load(f)
        k.update(metrics_keys(p, m))
        k.update(decode_keys(p, load(folder / f.name.replace("metrics.json", "decode.json.gz"))))
        if m["n"] == 4:
            train_minutes.append(m["wall_s"] / 60)
    k[run + ".n4_train_minutes"] = span(min(train_minutes), max(train_minutes), 1)
    k.update(vllm_keys(f"{run}.code-bytes/deep-medusa-n4", load(folder / "code-bytes_deep-medusa-n4.vllm.json.gz")))
    for r in rows(folder / "heads.md"):
        if r["head_type"] != "transformer":
            base = next(t for t in rows(folder / "heads.md")
                        if t["head_type"] == "transformer" and (t["preset"], t["n"]) == (r["preset"], r["n"]))
            p = f"{run}.{r['dataset']}/{r['preset']}-{r['head_type']}-n{r['n']}"
            k[p + ".params_vs_transformer"] = signed((int(r["params"]) / int(base["params"]) - 1) * 100, 2) + " %"
    run4 = study_time(RAW / "default-study-2026-11-30" / "study_time.txt")["total_minutes"]
    k[run + ".minutes_with_default"] = fmt(run4 + study_time(folder / "study_time.txt")["total_minutes"], 0)
    greedy = [1000 / number(r["tokens_per_s"]) for r in rows(folder / "speculative.md")
              if r["dataset"] == "induction" and r["method"] == "autoregressive" and r["batch_size"] == "1"]
    k[run + ".greedy_ms_1M"] = span(min(greedy), max(greedy), 1)
    return k


def smollm2_keys(run, folder):
    """A folder of configs/smollm2.yaml (SmolLM2-135M with three heads added): the report's and the model's files."""
    m, dec, vl = load(folder / "metrics.json.gz"), load(folder / "decode.json.gz"), load(folder / "vllm.json.gz")
    k = {**decode_keys(run, dec), **vllm_keys(run, vl), f"{run}.vllm_table": vllm_table(vl)}
    k[f"{run}.train_minutes"], k[f"{run}.step_s"] = fmt(m["wall_s"] / 60, 1), fmt(m["step_time_s"], 1)
    k[f"{run}.tokens_seen"] = f"{m['tokens_seen'] / 1000:.0f}k"
    h = m["val_history"]
    body = [[h["step"][i], fmt(h["wall_s"][i] / 60, 1)] + [fmt(h[f"val_agree_head_{j}"][i], 3) for j in (2, 3, 4)]
            + [fmt(h[f"val_loss_head_{j}"][i]) for j in (2, 3, 4)] for i in range(len(h["step"]))]
    k[f"{run}.agreement_table"] = table("| step | minutes | agree head 2 (t+2) | head 3 (t+3) | head 4 (t+4) "
                                         "| val loss head 2 | head 3 | head 4 |", body)
    k[f"{run}.agree2_gain_last30"] = signed(h["val_agree_head_2"][-1] - h["val_agree_head_2"][-3])
    k[f"{run}.minutes_last30"] = fmt((h["wall_s"][-1] - h["wall_s"][-3]) / 60, 1)
    k[f"{run}.agree_pct"] = " / ".join(fmt(m[f"val_agree_head_{j}"] * 100, 0) for j in (2, 3, 4))
    accept = dec["per_batch"][0]["spec"]["accept_rate_per_pos"]
    k[f"{run}.accept_pct"] = " / ".join(fmt(a * 100, 0) for a in accept)
    k[f"{run}.spec_forward_cost"] = fmt(dec["per_batch"][0]["tokens_per_forward"] / dec["per_batch"][0]["speedup"], 1)
    body = [[b["batch_size"], tps(b["ar"]["tokens_per_s"]), tps(b["spec"]["tokens_per_s"]),
             f"{fmt(b['speedup'])} [{span(b['speedup_spread']['min'], b['speedup_spread']['max'])}]",
             fmt(b["tokens_per_forward"]), per_pos(b["spec"]["accept_rate_per_pos"]), b["lossless"]]
            for b in dec["per_batch"]]
    k[f"{run}.decode_table"] = table("| batch | greedy tok/s | speculative tok/s | speed-up [rounds] | tokens/forward "
                                      "| acceptance per draft position | lossless |", body)
    for name, bench in load(folder / "eval_code.json.gz")["benchmarks"].items():
        solved = sum(p["correct"] for p in bench["problems"])
        k[f"{run}.{name}.pass1"] = fmt(solved / len(bench["problems"]), 3)
        k[f"{run}.{name}.solved"] = f"{solved}/{len(bench['problems'])}"
    for r in load(folder / "acceptance_by_prompts.jsonl"):
        k[f"{run}.{r['prompts']}_prompts.accept"] = per_pos(r["accept_rate_per_pos"])
        k[f"{run}.{r['prompts']}_prompts.tpf"] = fmt(r["tokens_per_forward"])
    return k


def smollm2():
    """smollm2-2026-12-06/: configs/smollm2.yaml at commit b427892 (raw HumanEval prompts, before few_rows_linear)."""
    folder = RAW / "smollm2-2026-12-06"
    minutes = fmt(elapsed_minutes(gzip.open(folder / "snakemake.log.gz", "rt").read()), 1)
    return {**smollm2_keys("smollm2", folder), "smollm2.minutes": minutes}


def smollm2_b():
    """smollm2-2026-12-07/: configs/smollm2.yaml at commit 7919201 (HumanEval prompts in the chat template,
    few_rows_linear in decoding, vLLM at k = 1 and 3), its rules' minutes (study_time.txt) and
    benchmarks/self_distill_probe.py after it."""
    folder = RAW / "smollm2-2026-12-07"
    k = {**smollm2_keys("smollm2b", folder), **study_time_keys("smollm2b", folder / "study_time.txt")}  # minutes
    times = dict(line.split() for line in (folder / "times.txt").read_text().splitlines())
    k["smollm2b.install_minutes"] = fmt(int(times["install_s"]) / 60, 1)
    return {**k, **probe_keys("smollm2b.probe", load(folder / "self_distill_probe.jsonl"))}


def probe_keys(prefix, rows, steps_on="the base model's answers"):
    """The lines of benchmarks/self_distill_probe.py: its table (step, minutes, acceptance, tokens per forward, loss),
    the stream it trained on, and its last and best tokens per forward."""
    steps = [r for r in rows if "step" in r]
    body = [[r["step"], fmt(r["minutes"], 1), per_pos(r["accept_rate_per_pos"]), fmt(r["tokens_per_forward"]),
             fmt(r["loss"]) if "loss" in r else "-"] for r in steps]
    gen = next(r for r in rows if "generated_tokens" in r)
    best = max(steps, key=lambda r: r["tokens_per_forward"])
    return {f"{prefix}_table": table(f"| heads' steps on {steps_on} | minutes | acceptance per draft "
                                     "position | tokens per forward | training loss |", body),
            f"{prefix}.tokens": f"{gen['generated_tokens'] / 1000:.0f}k",
            f"{prefix}.problems": str(gen.get("problems", gen.get("source"))),
            f"{prefix}.windows": str(gen["windows"]), f"{prefix}.tpf_last": fmt(steps[-1]["tokens_per_forward"]),
            f"{prefix}.tpf_first": fmt(steps[0]["tokens_per_forward"]),
            f"{prefix}.tpf_best": fmt(best["tokens_per_forward"]), f"{prefix}.best_step": str(best["step"]),
            f"{prefix}.best_accept": per_pos(best["accept_rate_per_pos"]),
            f"{prefix}.gen_minutes": fmt(gen["minutes_to_generate_and_cache"], 1)}


def self_distill():
    """self-distill-2026-12-07/probe.jsonl: benchmarks/self_distill_probe.py on every MBPP train-split problem, 400
    steps, on the model of smollm2-2026-12-07 (its study's heads)."""
    return probe_keys("sd", load(RAW / "self-distill-2026-12-07" / "probe.jsonl"))


def sequential_smollm2():
    """sequential-smollm2-2026-12-07/: benchmarks/self_distill_probe.py --head-type sequential on the model of
    smollm2-2026-12-07 (trunk and head 1 kept, three fresh DeepSeek-V3 modules): probe.jsonl on the base model's
    answers to every MBPP train-split problem, probe_stdlib.jsonl on the study's first 400k training tokens."""
    folder = RAW / "sequential-smollm2-2026-12-07"
    return {**probe_keys("seqsd", load(folder / "probe.jsonl")),
            **probe_keys("seqdata", load(folder / "probe_stdlib.jsonl"), "the study's training data")}


def add_heads():
    """add-heads-2026-11-30/: configs/add-heads.yaml in Run 4's clone (heads added to code-bytes/deep-n1)."""
    folder, run4 = RAW / "add-heads-2026-11-30", RAW / "default-study-2026-11-30"
    k = {"add_heads.minutes": fmt(elapsed_minutes(gzip.open(folder / "snakemake.log.gz", "rt").read()), 1)}
    body, b1 = [], []
    for label, f in (("deep-init-n4 (transformer heads added)", folder / "deep-init-n4"),
                     ("deep-init-medusa-n4 (Medusa-1 heads added)", folder / "deep-init-medusa-n4"),
                     ("deep-n4 (Run 4: 4 heads from scratch)", run4 / "deep-n4")):
        dec, vl = load(f"{f}.decode.json.gz"), load(f"{f}.vllm.json.gz")
        if f.parent == folder:
            p = "add_heads.code-bytes/" + f.name
            k.update({**decode_keys(p, dec), **vllm_keys(p, vl), **metrics_keys(p, load(f"{f}.metrics.json.gz"))})
            b1.append(dec["per_batch"][0]["speedup"])
        native = [speed_cell(b["speedup"], b["speedup_spread"]) for b in dec["per_batch"]]
        cfg = {c["name"]: c["per_batch"] for c in vl["configs"]}
        served = [speed_cell(b["speedup"], b["speedup_spread"])
                  for b in (cfg["heads_k3"][0], cfg["heads_k3"][1], cfg["ngram"][0], cfg["draft"][0])]
        body.append([label, fmt(dec["per_batch"][0]["tokens_per_forward"]),
                     per_pos(dec["per_batch"][0]["spec"]["accept_rate_per_pos"])] + native + served)
    k["add_heads.table"] = table("| model | tokens/forward | accept per draft position | native b1 | native b8 "
                                 "| vLLM heads b1 | vLLM b8 | vLLM ngram b1 | vLLM draft b1 |", body)
    k["add_heads.b1_span"] = span(min(b1), max(b1))
    return k


def run5():
    """default-study-2026-11-30-run5/: the README's command in a fresh clone; only the report's .md tables and the
    wall clock were kept (no decode.json / vllm.json / per-story induction results)."""
    folder = RAW / "default-study-2026-11-30-run5"
    k = study_keys("run5", folder)
    text = (folder / "wallclock.txt").read_text()
    k["run5.minutes"] = fmt(elapsed_minutes(text), 1)
    k["run5.minutes_all"] = fmt(int(re.search(r"seconds=(\d+)", text).group(1)) / 60, 1)
    return k


def run4():
    """default-study-2026-11-30/: Run 4, the committed config.yaml timed with benchmarks/study_time.sh."""
    folder = RAW / "default-study-2026-11-30"
    k = study_keys("run4", folder)
    k.update(heads_keys("run4", rows(folder / "heads.md")))
    dec = load(folder / "deep-n4.decode.json.gz")["per_batch"][0]
    k["run4.code-bytes/deep-n4.spec_forward_cost"] = fmt(dec["tokens_per_forward"] / dec["speedup"], 1)
    return k


def run3():
    """default-study-induction1000/: Run 3 (commit 5a92085), with `mtp bench decode` / `mtp bench vllm` after it."""
    folder = RAW / "default-study-induction1000"
    return {**study_keys("run3", folder), **bench_keys("run3", folder),
            **train_minutes("run3", folder / "study_time.log.gz")}


def run2():
    """default-study-900steps/: Run 2 (commit 329a192), with `mtp bench decode` / `mtp bench vllm` after it."""
    folder = RAW / "default-study-900steps"
    return {**study_keys("run2", folder), **bench_keys("run2", folder)}


def run1():
    """default-study-650steps/: Run 1 (commit acf8874)."""
    return study_keys("run1", RAW / "default-study-650steps")


def calibration():
    """calibration_2026-11-29.jsonl: runs on the shared machine before the default study."""
    runs = load(RAW / "calibration_2026-11-29.jsonl")
    deep = next(r for r in runs if r["run"] == "train code-bytes w128l12 4")
    k = {f"calib.bpb.{step}": fmt(v["bpb_head_1"]) for step, v in deep["val_bits_per_token_by_step"].items()}
    d = next(r for r in runs if r["run"].startswith("decode check"))
    k.update({f"calib.tpf.k{j}": fmt(d[f"tokens_per_forward_k{j}"]) for j in (1, 2, 3)})
    k["calib.accept"], k["calib.degenerate"] = per_pos(d["accept_rate_per_pos"]), str(d["degenerate_prompts"])
    k["calib.induction"] = fmt(next(r for r in runs if "induction_acc" in r)["induction_acc"], 3)
    k["calib.poly_max"] = fmt(max(next(r for r in runs if "poly_acc_m1_to_m6" in r)["poly_acc_m1_to_m6"]), 3)
    return k


def synthetic_curve():
    """synthetic_curve_2026-11-29.jsonl: 1M checkpoints every 100 steps scored by benchmarks/synthetic_curve.py."""
    points = [r for r in load(RAW / "synthetic_curve_2026-11-29.jsonl") if "step" in r]
    curves = {}
    for r in points:
        curves.setdefault(r["model"], {})[r["step"]] = r.get("induction_acc", r.get("poly_acc_m1"))
    k, steps, body = {}, range(700, 1500, 100), []
    for model, label in (("induction/1M-n1", "induction n = 1"), ("induction/1M-n2", "induction n = 2"),
                         ("polynomial/1M-n1", "polynomial n = 1, m = 1")):
        c = curves[model]
        k.update({f"synth.{model}.{s}": fmt(acc) for s, acc in c.items()})
        early = [acc for s, acc in c.items() if s <= 600]
        first = span(min(early), max(early)) if min(early) != max(early) else fmt(min(early))
        body.append([label, first] + [fmt(c[s]) if s in c else "" for s in steps])
    k["synth.table"] = table("| step | 100–600 | " + " | ".join(map(str, steps)) + " |", body)
    poly = curves["polynomial/1M-n1"]
    k["synth.poly_max"], k["synth.poly_last_step"] = fmt(max(poly.values())), str(max(poly))
    last = max((r for r in points if r["model"] == "polynomial/1M-n1"), key=lambda r: r["step"])
    k["synth.poly_tokens"] = f"{last['tokens_seen'] / 1e6:.1f}M"
    return k


def synthetic_curve_tiny():
    """synthetic_curve_tiny_2026-12-07.jsonl: induction at size tiny, n = 1 and n = 2, checkpoints every 100 steps."""
    points = [r for r in load(RAW / "synthetic_curve_tiny_2026-12-07.jsonl") if "step" in r]
    k, steps, body = {}, range(500, 1600, 100), []
    for n in (1, 2):
        c = {r["step"]: r["induction_acc"] for r in points if r["model"] == f"induction/tiny-n{n}"}
        k.update({f"synth_tiny.n{n}.{s}": fmt(acc) for s, acc in c.items()})
        body.append([f"induction n = {n}"] + [fmt(c[s]) for s in steps])
    k["synth_tiny.table"] = table("| step | " + " | ".join(map(str, steps)) + " |", body)
    return k


def compile_ab():
    """compile_ab_2026-11-30.jsonl: 100 training steps of deep n = 1 and n = 4, eager vs compiled blocks."""
    runs = [r for r in load(RAW / "compile_ab_2026-11-30.jsonl") if "note" not in r]
    tps_of = {(r["n"], r["compile"]): r["median_tokens_per_s_steps_6_100"] for r in runs}
    k = {f"compile_ab.{'compiled' if c == 'True' else 'eager'}.n{n}": str(v) for (n, c), v in tps_of.items()}
    gains = [(tps_of[(n, "True")] / tps_of[(n, "False")] - 1) * 100 for n in ("1", "4")]
    k["compile_ab.gain_pct"] = span(min(gains), max(gains), 0)
    tokens_per_step = 16 * 256  # config.yaml's train.batch_size x train.seq_len
    first = min(r["first_step_tokens_per_s"] for r in runs if r["compile"] == "True")
    k["compile_ab.first_step_s"] = fmt(tokens_per_step / first, 0)
    return k


def fused_ab():
    """decode_fused_ab.jsonl: benchmarks/decode_fused_ab.py, the engine before and after model.FusedHeads."""
    body, k = [], {}
    for r in load(RAW / "decode_fused_ab.jsonl"):
        b, a = r["before"], r["after"]
        body.append([r["threads"], r["batch_size"], f"{tps(b['ar_tokens_per_s'])} / {tps(a['ar_tokens_per_s'])}",
                     f"{tps(b['spec_tokens_per_s'])} / {tps(a['spec_tokens_per_s'])}",
                     f"{fmt(b['speedup'])} [{span(b['speedup_min'], b['speedup_max'])}]",
                     f"**{fmt(a['speedup'])} [{span(a['speedup_min'], a['speedup_max'])}]**"])
        k[f"fused_ab.t{r['threads']}.b{r['batch_size']}"] = fmt(a["speedup"])
    k["fused_ab.table"] = table("| threads | batch | greedy tok/s (before / after) "
                                "| speculative tok/s (before / after) | speed-up before [min–max] "
                                "| **speed-up after** [min–max] |", body)
    return k


def sequential_ab():
    """sequential-drafting-2026-12-07/ab.jsonl: benchmarks/sequential_draft_ab.py, sequential heads' drafting eager
    vs compiled (decode.compile), and end to end against the parallel (transformer) heads of the same size."""
    k, cost, e2e = {}, [], []
    for r in load(RAW / "sequential-drafting-2026-12-07" / "ab.jsonl"):
        b = r["batch_size"]
        if r["part"] == "step_cost":
            m, f = r["ms_median"], r["drafting_over_forward"]
            name = "random" if "random" in r["model"] else r["model"].rstrip("/").split("/")[-1]
            cost.append([name, b, fmt(m["forward"]), fmt(m["propose_eager"]), fmt(m["propose_compiled"]),
                         f"{fmt(f['eager'])} → **{fmt(f['compiled'])}**", r["same_drafts"]])
            k[f"seq_ab.cost.{name}.b{b}.eager"], k[f"seq_ab.cost.{name}.b{b}.compiled"] = fmt(f["eager"]), fmt(f["compiled"])
            continue
        name = r["seq_model"].rstrip("/").split("/")[-1]
        sp, over = r["speedup"], r["seq_over_par"]
        cell = lambda s: f"{fmt(s['median'])} [{span(s['min'], s['max'])}]"  # noqa: E731
        e2e.append([name, b, r["prompts"], cell(sp["seq_eager"]), f"**{cell(sp['seq_compiled'])}**", cell(sp["par"]),
                    f"**{cell(over['seq_compiled'])}**", f"{fmt(r['tokens_per_forward']['seq'])} / "
                    f"{fmt(r['tokens_per_forward']['par'])}", all(r["lossless"].values())])
        for what, s in (("eager", sp["seq_eager"]), ("compiled", sp["seq_compiled"]), ("par", sp["par"])):
            k[f"seq_ab.{name}.b{b}.{what}"] = fmt(s["median"])
        k[f"seq_ab.{name}.b{b}.over_par"] = fmt(over["seq_compiled"]["median"])
        k[f"seq_ab.{name}.b{b}.over_par.range"] = span(over["seq_compiled"]["min"], over["seq_compiled"]["max"])
    k["seq_ab.cost_table"] = table("| model | batch | forward ms | drafting ms eager | drafting ms compiled "
                                   "| drafting / forward (eager → compiled) | same drafts |", cost)
    k["seq_ab.e2e_table"] = table("| sequential model | batch | prompts | speed-up eager [min–max] "
                                  "| **speed-up compiled** | parallel heads' speed-up | **sequential / parallel** "
                                  "| tokens per forward (seq / par) | lossless |", e2e)
    return k


def few_rows_ab():
    """few-rows-2026-12-07/ab.jsonl: benchmarks/few_rows_ab.py, decode forwards with nn.Linear's product (F.linear)
    and with mtp.nn.model.few_rows_linear, interleaved; per cell the median over rounds of each round's median."""
    import statistics
    runs = load(RAW / "few-rows-2026-12-07" / "ab.jsonl")
    cells = {}
    for r in runs[1:]:
        cells.setdefault((r["model"], r["batch"], r["mode"]), []).append(r)
    med = lambda rs, kind: statistics.median(r[kind] for r in rs) * 1e3  # noqa: E731  ms
    k, body = {"few_rows.cpu": runs[0]["machine"], "few_rows.rounds": str(runs[0]["rounds"])}, []
    for (model, b, mode), rs in cells.items():
        g, s1, s3 = med(rs, "greedy"), med(rs, "spec_k1"), med(rs, "spec_k3")
        key = f"few_rows.{model}.b{b}.{mode}"
        k[f"{key}.greedy"], k[f"{key}.k1"], k[f"{key}.k3"] = fmt(g, 1), fmt(s1, 1), fmt(s3, 1)
        k[f"{key}.k1_over_greedy"], k[f"{key}.k3_over_greedy"] = fmt(s1 / g), fmt(s3 / g)
        body.append([model, b, mode, fmt(g, 1), fmt(s1, 1), fmt(s3, 1), fmt(s1 / g), fmt(s3 / g)])
    k["few_rows.table"] = table("| model | batch | product | greedy forward ms | speculative k = 1 ms | k = 3 ms "
                                "| k = 1 / greedy | k = 3 / greedy |", body)
    return k


def recursive_vllm():
    """recursive-heads-2026-12-07/: code-bytes deep n = 4 with recursive heads (configs/head-types.yaml, 900 steps),
    its `mtp decode` (decode.json) and `mtp vllm` (vllm.json: vLLM's own method mtp on the MiMo export)."""
    folder = RAW / "recursive-heads-2026-12-07"
    v = load(folder / "vllm.json")
    k = {**decode_keys("recursive.deep", load(folder / "decode.json")), **vllm_keys("recursive.deep", v)}
    k["recursive.vllm_table"] = vllm_table(v)
    k["recursive.crosscheck"] = "equal" if v["crosscheck"]["ok"] else "differ"
    return k


def mimo_probe():
    """vllm-mimo-mtp-probe-2026-11-30/results.json: vLLM's MTP route on a MiMo-layout checkpoint (variant A:
    MTP layer 0 always right, layers 1-2 always wrong)."""
    a = load(RAW / "vllm-mimo-mtp-probe-2026-11-30" / "results.json")[0]
    m = a["spec_metrics"]
    return {"probe.accepted_per_pos": str(m["vllm:spec_decode_num_accepted_tokens_per_pos"]),
            "probe.drafts": str(m["vllm:spec_decode_num_drafts"])}


FOLDERS = (seeds_a, seeds_b, seeds_c, seeds_d, seeds_e, pooled_seeds, deep_b8, vllm_stage_time, medusa_vs_recursive,
           draft_baseline, attention_training, seeds_g, seeds_h, at_run_e_speed,
           gpu_h100, cpu_bench, head_types, smollm2, add_heads, run5, run4, run3, run2, run1, calibration,
           synthetic_curve, synthetic_curve_tiny, compile_ab, fused_ab, mimo_probe, sequential_ab, recursive_vllm,
           few_rows_ab, smollm2_b, self_distill, sequential_smollm2)
