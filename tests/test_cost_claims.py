"""The memory and overhead claims (mtp/report/cost.py) and the train benchmark that feeds them (mtp/training/bench.py,
rule bench_training): each rule's every verdict, per vocabulary; the subcommand writing the file the report reads;
the rule in the default study's DAG."""
import subprocess

import pytest
import yaml

from mtp import report
from mtp.training.bench import shape_record
from mtp.report import cost
from mtp.result_types import BenchTrain

from conftest import BIN, copy_workflow, snakemake_env

R, N, C, D, V = report.REPRODUCED, report.NOT_AT_SCALE, report.CONTRADICTED, report.NO_DATA, report.NO_VERDICT
SHAPE = dict(dim=128, n_layers=12, n_attn_heads=4, seq=256, batch=1)  # the default study's deep preset


def train_bench(time_ratio, mem_growth, naive_growth=3.0, vocabs=(257, 32768), jitter=0.0):
    """bench/train.json as `mtp bench train --dataset ...` writes it (mtp.training.bench.shape_record), one shape per
    vocabulary: step time n=4 over n=1 = time_ratio in 5 rounds (every other round off by `jitter`), and peak step
    memory growing linearly in n by the factors given from n=1 to n=4 (memory-efficient, naive backward)."""
    shapes = []
    for vocab in vocabs:
        s = {**SHAPE, "vocab": vocab}
        times = {"n1": [1.0] * 5, "n4": [time_ratio * (1 + jitter * (i % 2)) for i in range(5)]}
        mem = {f"{mode}_n{n}": 100.0 * (1 + (growth - 1) * (n - 1) / 3) for mode, growth in
               (("memory_efficient", mem_growth), ("naive", naive_growth)) for n in (1, 2, 4)}
        shapes.append(shape_record(f"deep, vocab {vocab}", s, times, mem))
    return {"shapes": shapes, "device": "cpu", "dtype": "float32", "repeats": 5, "torch_threads": 2}


def typed_bench(*args, **kw):
    """train_bench(...) as the report reads it (mtp.result_types.BenchTrain), checked as the writer checks it."""
    return BenchTrain.read(BenchTrain.check(train_bench(*args, **kw)))


# ---------------------------------------------------------------- the rules, every verdict

def mem(vocab, efficient, naive):
    return {"vocab": vocab, "efficient": efficient, "naive": naive}


def test_memory_rule_gives_each_verdict_per_vocabulary():
    rule = cost.verdict_memory_flat
    assert rule([mem(32768, 1.02, 2.3)]) == f"{R} at vocab 32768"
    assert rule([mem(32768, 1.15, 2.3)]) == f"{R} at vocab 32768"  # the limit: flat plus 15% of noise
    assert rule([mem(32768, 1.2, 2.3)]) == f"{C} at vocab 32768"
    assert rule([mem(257, 0.9, 1.05)]) == f"{N} at vocab 257 (the naive backward is flat too)"  # logits too small
    assert rule([mem(257, None, None)]) == f"{D} at vocab 257"
    assert rule([]) == D and rule(None) == D
    both = rule([mem(257, 0.9, 1.05), mem(32768, 1.0, 2.3)])
    assert both == f"{R} at vocab 32768; {N} at vocab 257 (the naive backward is flat too)"
    assert rule([mem(257, 1.0, 2.0), mem(32768, 1.01, 2.3)]) == f"{R} at vocab 257 and 32768"
    assert rule([mem(257, 1.0, 2.0), mem(32768, 1.6, 2.3)]).startswith(f"{C} at vocab 32768; ")  # it leads


def timing(vocab, ratio, predicted, spread=0.05, unstable=False):
    return {"vocab": vocab, "ratio": ratio, "predicted": predicted, "spread": spread, "unstable": unstable}


def test_overhead_rule_gives_each_verdict_per_vocabulary():
    rule = cost.verdict_training_overhead
    assert rule([timing(257, 1.12, 1.03)]) == f"{R} at vocab 257"
    assert rule([timing(32768, 2.6, 2.42)]) == f"{N} at vocab 32768 (the FLOP count explains it)"
    assert rule([timing(32768, 2.83, 2.42)]) == f"{C} at vocab 32768"  # 17% above the FLOP count (RESULTS.md)
    assert rule([timing(257, 1.5, None)]) == f"{C} at vocab 257"
    assert rule([timing(257, 1.1, 1.03, spread=0.4, unstable=True)]) == \
        f"{V} at vocab 257 (unstable timing, spread 40%)"
    assert rule([timing(32768, 4.0, 2.42, spread=0.3, unstable=True)]).startswith(V)  # never judged when unstable
    assert rule([timing(257, 0.5, 1.03)]) == f"{D} at vocab 257 (n heads 2.0x faster than one: timing noise)"
    assert rule([timing(257, 1.1, 1.03, spread=None)]) == f"{D} at vocab 257 (no step-time ratio with its spread)"
    assert rule([]) == D and rule(None) == D
    both = rule([timing(257, 1.1, 1.03), timing(32768, 2.83, 2.42)])
    assert both == f"{C} at vocab 32768; {R} at vocab 257"
    unstable = rule([timing(257, 1.1, 1.03), timing(32768, 2.5, 2.42, spread=0.3, unstable=True)])
    assert unstable == f"{V} at vocab 32768 (unstable timing, spread 30%); {R} at vocab 257"


# ---------------------------------------------------------------- the claims, from the benchmark's file

def _judge(c):
    return c["rule"](*c["args"])


def test_claims_state_both_shapes_and_judge_each():
    bench = typed_bench(time_ratio=1.1, mem_growth=1.0, naive_growth=2.5)
    overhead, memory = cost.claim_overhead([], bench), cost.claim_memory([], bench)
    assert "n=4/n=1 step time 1.10x [1.10-1.10] at vocab 257 (FLOP ratio 1.03)" in overhead["ours"]
    assert "at vocab 32768 (FLOP ratio 2.70)" in overhead["ours"] and "dim 128, 12 layers" in overhead["ours"]
    assert _judge(overhead) == f"{R} at vocab 257 and 32768"
    assert "n=4/n=1 peak step memory 1.00x memory-efficient (100.0 -> 100.0 MiB), 2.50x naive at vocab 257" in \
        memory["ours"]
    assert _judge(memory) == f"{R} at vocab 257 and 32768"
    # the project's own 32k-vocabulary measurement: 2.83x against a FLOP count of 2.42
    assert _judge(cost.claim_overhead([], typed_bench(time_ratio=3.2, mem_growth=1.0))).startswith(
        f"{C} at vocab 257 and 32768")  # 3.2 > 2.70 x 1.15
    assert _judge(cost.claim_overhead([], typed_bench(time_ratio=1.1, mem_growth=1.0, jitter=0.4))).startswith(V)
    grows = cost.claim_memory([], typed_bench(time_ratio=1.1, mem_growth=1.6))
    assert _judge(grows) == f"{C} at vocab 257 and 32768"


def test_claims_without_the_benchmark_have_no_data_and_say_why():
    for bench in (None, BenchTrain.read({"mem_ratio_n8_vs_n1": 1.0, "time_ratio_n4_vs_n1": 1.1})):  # absent; older
        for c in (cost.claim_memory([], bench), cost.claim_overhead([], bench)):
            assert _judge(c) == D
            assert c["ours"].startswith("no data: bench/train.json") and "rule bench_training" in c["ours"]
            assert "metrics.json is not used" in c["ours"]


# ---------------------------------------------------------------- the subcommand and the rule

def test_bench_train_subcommand_writes_the_file_the_report_reads(tiny_cfg, tmp_path):
    """`mtp bench train --dataset ... --out` (rule bench_training) at a tiny shape: micro (dim 64, 5 layers), 32 x 1
    tokens, 2 rounds; meta.json holds the one key it reads (the tokenizer's vocabulary)."""
    from mtp.io import write_json
    cfg = {**tiny_cfg, "bench": {"train": True, "batch_size": 1, "repeats": 2}}
    cfg["train"] = {**cfg["train"], "seq_len": 32}
    write_json(tmp_path / "results" / "data" / "code" / "meta.json", {"vocab_size": 512})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "results" / report.BENCH_TRAIN
    run = subprocess.run([str(BIN / "mtp"), "bench", "train", "--config", str(tmp_path / "cfg.yaml"), "--dataset",
                          "code", "--size", "micro", "--n-heads", "2", "--out", str(out)],
                         capture_output=True, text=True, env={**snakemake_env(), "OMP_NUM_THREADS": "1"}, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    from mtp import config
    study = config.load(str(tmp_path / "cfg.yaml"))
    bench, status = report.load_bench(study)
    assert status == "ok"
    assert [x.shape.vocab for x in bench.shapes] == [512, 32768]
    assert all(x.shape.batch == 1 and x.shape.seq == 32 and x.n == 4 for x in bench.shapes)
    assert len(report.bench_rows(bench)) == 2 * 2 * 3  # 2 vocabularies x 2 backwards x n in 1, 2, 4
    claims = {c["claim"]: c for c in report.claims(report.load_study(study), bench)}
    memory = "Peak training memory stays flat in n (memory-efficient backward)"
    for name in (memory, "Small training-time overhead of n heads"):
        assert "at vocab 512" in claims[name]["verdict"] and "at vocab 32768" in claims[name]["verdict"], claims[name]
        assert "code/micro" in claims[name]["ours"]
    # the measurement sees what the paper claims: one head's logits (32 x 32768 floats, 4 MiB) alive at a time with
    # the memory-efficient backward, every head's with the naive one; the RSS follows the live tensors
    # (mtp.training.bench.MMAP_THRESHOLD: with glibc's default, n=4 adds about one head's logits to the memory-efficient step)
    logits, mem = 32 * 32768 * 4 / 2 ** 20, bench.shapes[1].peak_step_mem_mb
    assert mem.at("memory_efficient_n4") - mem.at("memory_efficient_n1") < 0.5 * logits, mem
    assert mem.at("naive_n4") - mem.at("naive_n1") > 2 * logits, mem
    assert claims[memory]["verdict"].startswith(f"{R} at vocab 32768"), claims[memory]


@pytest.mark.parametrize("enabled", [True, False])
def test_default_study_runs_the_benchmark_alone_before_the_report(tmp_path, enabled):
    wd = copy_workflow(tmp_path)
    args = [] if enabled else ["--config", 'bench={"train": false}']
    run = subprocess.run([str(BIN / "snakemake"), "-n", "--cores", "2", *args], cwd=wd, capture_output=True,
                         text=True, env=snakemake_env(), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = {block.split(":", 1)[0]: block for block in run.stdout.split("rule ")[1:]}
    assert ("bench_training" in jobs) == enabled
    report_input = jobs["build_report"].split("input: ", 1)[1].split("\n", 1)[0]
    assert ("results/bench/train.json" in report_input) == enabled
    if enabled:
        bench = jobs["bench_training"]
        assert "input: results/data/code-bytes/meta.json" in bench  # the deep code model's dataset
        # a timing job holds every share of the `machine` resource: nothing runs beside it
        assert "threads: 2" in bench and "machine=64" in bench
        assert all("machine=1" in b for name, b in jobs.items() if name in ("train_model", "tokenize_corpus"))
