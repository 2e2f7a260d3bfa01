rule time_decoding:
    input:
        R("models/{dataset}/{size}-n{n}/model.pt"),
    output:
        R("models/{dataset}/{size}-n{n}/decode.json"),
    log:
        R("logs/time_decoding/{dataset}/{size}-n{n}.log"),
    params:
        cfg=section("decode"),
    threads: CORES
    resources:
        gpu=0,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={TIMING_THREADS} mtp decode --config {CFG} --dataset {wildcards.dataset} --size {wildcards.size} "
        "--n-heads {wildcards.n} --device $([ {resources.gpu} -gt 0 ] && echo cuda || echo cpu) 2>&1 | tee {log}"
