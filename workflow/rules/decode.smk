def decode_threads(w):
    """n > 1: timing, so every core is reserved (nothing runs beside it); n = 1: an untimed quality check."""
    return CORES if int(w.n) > 1 else JOB_THREADS


rule time_decoding:
    input:
        R("models/{dataset}/{size}-n{n}/model.pt"),
        config=ancient(CFG),  # the resolved config every `mtp` call reads
    output:
        result_output("decode"),
    log:
        R("logs/time_decoding/{dataset}/{size}-n{n}.log"),
    params:
        cfg=section("decode"),
        omp=lambda w: min(decode_threads(w), TIMING_THREADS),
    threads: decode_threads
    resources:
        gpu=0,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={params.omp} mtp decode --config {input.config} --dataset {wildcards.dataset} --size {wildcards.size} "
        "--n-heads {wildcards.n} --device $([ {resources.gpu} -gt 0 ] && echo cuda || echo cpu) 2>&1 | tee {log}"
