# The train benchmark (bench.train): peak step memory by n and step time n=4 vs n=1 at the study's shape and at
# vocab 32768, the evidence of the report's memory and overhead claims (mtp/training/bench.py, mtp/report/cost.py).
import mtp.head_types
import mtp.presets


def bench_train_model():
    """The model whose shape `mtp bench train` measures: the study's largest model (non-embedding parameters of
    its preset) with the paper's heads (transformer; any head type when there is none), a code model before a
    synthetic task's; ties: the first in the sweep."""
    paper = models_where(lambda m: m.head_type == mtp.head_types.PAPER) or MODELS

    def key(m):
        spec = mtp.presets.preset(m.size, config["model_presets"])
        return task(m) == "code", spec["n_layers"] * mtp.presets.block_matrix_params(spec["dim"])
    return max(paper, key=key)


BENCH_MODEL = bench_train_model()


if config["bench"]["train"]:  # else no rule writes it: the report reads one made by hand, if any

    rule bench_training:
        input:
            R(f"data/{BENCH_MODEL.dataset}/meta.json"),
            config=ancient(CFG),  # the resolved config every `mtp` call reads
        output:
            R(mtp.results.BENCH_TRAIN),
        log:
            R("logs/bench_training.log"),
        params:
            cfg=digest([config["bench"], BENCH_MODEL.train, config["model_presets"].get(BENCH_MODEL.size)]),
            dataset=BENCH_MODEL.dataset,
            slot=BENCH_MODEL.slot,
            n=BENCH_MODEL.n_heads,
        threads: TIMING_THREADS
        resources:
            gpu=min(1, BENCH_MODEL.train["gpus"]),
            **TIMING_JOB,  # nothing runs beside it
        conda:
            CONDA_ENV
        shell:
            "OMP_NUM_THREADS={TIMING_THREADS} mtp bench train --config {input.config} --dataset {params.dataset} "
            "--size {params.slot} --n-heads {params.n} --out {output} 2>&1 | tee {log}"
