"""The default study's raw folders (benchmarks/study_seeds.sh): one function each for benchmarks/raw_numbers.py
(listed in raw_folders.FOLDERS)."""
import gzip
import re
import statistics

from raw_readers import (RAW, decode_keys, fmt, load, rows, signed, span, study_time_keys, table, vllm_keys,
                         vllm_table)


def train_minutes(run, log):
    """Training minutes per model from a study's Snakemake log (each job's last line: '<dataset>/<size>-n<n>: val
    loss ... tokens in <s> s'): '{run}.train_min.<dataset>/<size>' the span over that size's jobs (seeds and n;
    the seed left out of size)."""
    by = {}
    text = gzip.open(log, "rt").read()
    for name, secs in re.findall(r"^(\S+)-n\d+: val loss head 1 .* tokens in (\d+) s$", text, re.M):
        by.setdefault(re.sub(r"-s\d+$", "", name), []).append(int(secs) / 60)
    return {f"{run}.train_min.{name}": span(min(m), max(m), 1) if len(m) > 1 else fmt(m[0], 1)
            for name, m in by.items()}


def induction_pairs(models):
    """({slot: eval_induction.json}, {n = 2 slot: (per-story (hits, count) of n = 2, of n = 1)}), one pair per seed."""
    ind = {f.parent.name: load(f) for f in sorted(models.glob("induction/*/eval_induction.json.gz"))}
    return ind, {two: tuple([(sum(x), len(x)) for x in ind[s]["correct_by_story"]] for s in (two, two[:-1] + "1"))
                 for two in sorted(s for s in ind if s.endswith("-n2"))}


def induction_keys_over_seeds(run, models, folder=None):
    """Each induction model's accuracy, each seed's n = 2 - n = 1 difference and the interval over seeds and
    stories, recomputed from the per-story results with mtp.paired.seed_interval (the report's rule); with the
    study's folder, also the interval and verdict its report printed when it ran ('.ci_at_run', that day's rule)."""
    from mtp.paired import seed_interval
    ind, pairs = induction_pairs(models)
    k = {f"{run}.induction/{slot}.induction": fmt(e["metrics"]["induction_acc"], 3) for slot, e in ind.items()}
    ci = seed_interval(list(pairs.values()))
    for two, diff in zip(pairs, ci["per_seed"]):  # each seed's n = 2 - n = 1, as the report computes it
        k[f"{run}.induction/{two[:-3]}.diff"] = signed(diff)
    k[f"{run}.induction.diff"] = signed(ci["diff"])
    k[f"{run}.induction.ci"] = f"[{signed(ci['lo'])}, {signed(ci['hi'])}]"
    k[f"{run}.induction.seeds"] = str(ci["seeds"])
    if folder is not None:
        claim = next(r for r in rows(folder / "claims.md") if r["claim"].startswith("n > 1 helps induction"))
        lo, hi = re.search(r"95% CI \[([-+.\d]+), ([-+.\d]+)\]", claim["ours"]).groups()
        k[f"{run}.induction.ci_at_run"] = f"[{signed(float(lo))}, {signed(float(hi))}]"
        k[f"{run}.induction.verdict_at_run"] = claim["verdict"].split(" (")[0]
    return k


def pooled_seeds():
    """Runs C and D together: six seeds of induction at size tiny, 1500 steps, judged by the report's rule."""
    from mtp.paired import seed_interval
    pairs = [p for name in ("default-seeds-2026-12-07-C", "default-seeds-2026-12-07-D")
             for p in induction_pairs(RAW / name / "models")[1].values()]
    ci = seed_interval(pairs)
    return {"seedsCD.induction.diff": signed(ci["diff"]),
            "seedsCD.induction.ci": f"[{signed(ci['lo'])}, {signed(ci['hi'])}]",
            "seedsCD.induction.positive": f"{sum(x > 0 for x in ci['per_seed'])} of {len(ci['per_seed'])}"}


def deep_bpb(folder):
    """The deep code model's validation bits per byte in a study folder's val_loss table."""
    return fmt(float(next(r for r in rows(folder / "val_loss.md") if r["size"] == "deep")["val_bits_per_byte"]), 2)


def claims_table(run, folder):
    body = [[r["claim"], r["training_runs"], r["verdict"]] for r in rows(folder / "claims.md")]
    return {f"{run}.claims": table("| claim | training runs | verdict |", body)}


def seeds_study(run, folder):
    """A default-study folder of benchmarks/study_seeds.sh: every model's result files (models/, gzipped), the
    report's tables, the train benchmark and the study time."""
    models = folder / "models"
    k = study_time_keys(run, folder / "study_time.txt")
    k.update(train_minutes(run, folder / "study_time.log.gz"))
    k.update(induction_keys_over_seeds(run, models, folder))
    deep = models / "code-bytes" / "deep-n4"
    d = load(deep / "decode.json.gz")
    k.update(decode_keys(f"{run}.code-bytes/deep-n4", d))
    k[f"{run}.code-bytes/deep-n4.kept"] = str(len(d["quality"]["kept"]))
    k[f"{run}.code-bytes/deep-n4.bpb"] = deep_bpb(folder)
    k[f"{run}.pass1_max"] = fmt(max(float(r["pass_at_k"]) for r in rows(folder / "code.md")), 1)
    for x in d["tokens_per_forward_by_k"]:
        k[f"{run}.code-bytes/deep-n4.tpf_k{x['k']}"] = fmt(x["tokens_per_forward"])
    v = load(deep / "vllm.json.gz")
    k.update(vllm_keys(f"{run}.code-bytes/deep-n4", v))
    k[f"{run}.vllm_table"] = vllm_table(v)
    k.update(claims_table(run, folder))
    return k


def seeds_a():
    """default-seeds-2026-12-06-A/: the committed config.yaml (induction at seeds 0-2), benchmarks/study_seeds.sh."""
    return seeds_study("seedsA", RAW / "default-seeds-2026-12-06-A")


def seeds_b():
    """default-seeds-2026-12-07-B/: the same config with seed 1 and induction seeds 3-5 (benchmarks/study_seeds.sh's
    second half), run from a clone at commit 73b3440."""
    return seeds_study("seedsB", RAW / "default-seeds-2026-12-07-B")


def seeds_c():
    """default-seeds-2026-12-07-C/: config.yaml with induction at size tiny, 1500 steps (seeds 0-2)."""
    return seeds_study("seedsC", RAW / "default-seeds-2026-12-07-C")


def seeds_d():
    """default-seeds-2026-12-07-D/: the same with seed 1 and induction seeds 3-5."""
    return seeds_study("seedsD", RAW / "default-seeds-2026-12-07-D")


def deep_b8():
    """default-deep-b8-2026-12-07/: a rebalancing tried and dropped -- the deep code model at 8 x 256 bytes a step,
    induction at tiny for 1000 steps. The study time, the deep model's loss and degenerate prompts, induction."""
    folder = RAW / "default-deep-b8-2026-12-07"
    k = study_time_keys("deep_b8", folder / "study_time.txt")
    k.update(train_minutes("deep_b8", folder / "study_time.log.gz"))
    k.update(induction_keys_over_seeds("deep_b8", folder / "models", folder))
    k["deep_b8.bpb"] = deep_bpb(folder)
    d = load(folder / "models" / "code-bytes" / "deep-n4" / "decode.json.gz")
    k["deep_b8.degenerate"] = str(d["quality"]["degenerate_prompts"])
    k.update(claims_table("deep_b8", folder))
    return k


def vllm_stage_time():
    """vllm-stage-time-2026-12-08/: `mtp vllm` on one model, the stage before and after its two savings, one run
    each, one after another (/usr/bin/time's last line in each log)."""
    folder, k = RAW / "vllm-stage-time-2026-12-08", {}
    for name in ("before", "rounds_kill1s", "after"):
        text = gzip.open(folder / f"{name}.log.gz", "rt").read()
        k[f"vllm_stage.{name}_s"] = fmt(float(re.findall(r"^([\d.]+) s$", text, re.M)[-1]), 0)
    return k


def medusa_vs_recursive():
    """medusa-vs-recursive-2026-12-08/: benchmarks/medusa_vs_recursive.yaml (code-bytes deep n = 4, medusa and
    recursive heads, one study): each model's native decoding, its vLLM table and its validation loss."""
    folder = RAW / "medusa-vs-recursive-2026-12-08"
    k = study_time_keys("mvr", folder / "study_time.txt")
    k.update(train_minutes("mvr", folder / "study_time.log.gz"))
    for t in ("medusa", "recursive"):
        model, p = folder / "models" / "code-bytes" / f"deep-{t}-n4", f"mvr.{t}"
        d, v = load(model / "decode.json.gz"), load(model / "vllm.json.gz")
        k.update(decode_keys(p, d))
        for x in d["tokens_per_forward_by_k"]:
            k[f"{p}.tpf_k{x['k']}"] = fmt(x["tokens_per_forward"])
        k.update(vllm_keys(p, v))
        k[f"{p}.vllm_table"] = vllm_table(v)
        k[f"{p}.crosscheck"] = "equal" if v["crosscheck"]["ok"] else "different"
        m = load(model / "metrics.json.gz")
        k[f"{p}.bpb"] = fmt(m["val_bits_per_byte"], 2)
    return k


def seeds_e():
    """default-seeds-2026-12-08-E/: run C's config again from a fresh clone, after the vLLM stage's savings."""
    folder = RAW / "default-seeds-2026-12-08-E"
    k = seeds_study("seedsE", folder)
    same = [f for f in sorted((folder / "models").rglob("eval_induction.json.gz"))
            if load(f)["correct_by_story"] == load(RAW / "default-seeds-2026-12-07-C" / f.relative_to(folder))
            ["correct_by_story"]]
    k["seedsE.induction.same_as_C"] = str(len(same))
    return k


def draft_baseline():
    """vLLM's draft_model baseline (the tiny n = 1 draft model, k = 3) in default-study runs A-E: the range of its
    speed-ups over no speculation at batch 1 and 8 (why the default study dropped it)."""
    runs = ("default-seeds-2026-12-06-A", "default-seeds-2026-12-07-B", "default-seeds-2026-12-07-C",
            "default-seeds-2026-12-07-D", "default-seeds-2026-12-08-E")
    speed = {1: [], 8: []}
    for run in runs:
        v = load(RAW / run / "models" / "code-bytes" / "deep-n4" / "vllm.json.gz")
        for row in next(c for c in v["configs"] if c["name"] == "draft")["per_batch"]:
            speed[row["batch_size"]].append(row["speedup"])
    k = {"draft_baseline.runs": str(len(runs))}
    for b, xs in speed.items():
        k[f"draft_baseline.b{b}.range"] = span(min(xs), max(xs))
    return k


def attention_training():
    """attention-training-2026-12-08/: training steps with CPU flash attention (math=0) and the scores path (math=1),
    runs alternating: the ratio of the medians of step_time_s (scores / flash) and the number of runs of each."""
    k = {}
    for model in ("tiny", "deep"):
        by = {}
        for line in (RAW / "attention-training-2026-12-08" / f"{model}.txt").read_text().splitlines():
            flag, step = line.split()[:2]
            by.setdefault(flag, []).append(float(step))
        k[f"attn_train.{model}.ratio"] = fmt(statistics.median(by["math=1"]) / statistics.median(by["math=0"]), 3)
        k[f"attn_train.{model}.runs"] = str(len(by["math=1"]))
        k[f"attn_train.{model}.flash.range"] = span(min(by["math=0"]), max(by["math=0"]), 3)
        k[f"attn_train.{model}.scores.range"] = span(min(by["math=1"]), max(by["math=1"]), 3)
    return k


def seeds_g():
    """default-seeds-2026-12-08-G/: config.yaml after the savings of commit 657517b (CPU training attention, vLLM
    engines started two at a time, no draft-model baseline), seed 0, induction seeds 0-2, from a fresh clone."""
    return seeds_study("seedsG", RAW / "default-seeds-2026-12-08-G")


def seeds_h():
    """default-seeds-2026-12-08-H/: the same with seed 1 and induction seeds 3-5, right after run G."""
    return seeds_study("seedsH", RAW / "default-seeds-2026-12-08-H")


def at_run_e_speed():
    """An estimate, not a measurement: run E's training job-minutes less its draft model's job, times the mean of the
    two attention ratios of attention_training (what run G's savings would have left of run E's training)."""
    folder, a = RAW / "default-seeds-2026-12-08-E", attention_training()
    e = {**study_time_keys("seedsE", folder / "study_time.txt"), **train_minutes("seedsE", folder / "study_time.log.gz")}
    tiny = float(e["seedsE.train_min.code-bytes/tiny"])
    ratio = (float(a["attn_train.tiny.ratio"]) + float(a["attn_train.deep.ratio"])) / 2
    return {"at_run_e_speed.train_job_minutes": fmt((float(e["seedsE.train.job_minutes"]) - tiny) * ratio, 1)}
