def timed(w):
    """n > 1: the decode stage times speculative decoding (nothing may run beside it); n = 1: an untimed
    quality check."""
    return int(w.n) > 1


rule time_decoding:
    input:
        model=R("models/{dataset}/{size}-n{n}/model.pt"),
        config=ancient(CFG),  # the resolved config every `mtp` call reads
    output:
        result_output("decode"),
    log:
        R("logs/time_decoding/{dataset}/{size}-n{n}.log"),
    params:
        cfg=section("decode"),
    threads: lambda w: TIMING_THREADS if timed(w) else JOB_THREADS
    resources:
        gpu=0,
        machine=lambda w: TIMING_JOB["machine"] if timed(w) else 1,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} mtp decode --config {input.config} --model {input.model} --device $([ {resources.gpu} -gt 0 ] && echo cuda || echo cpu) 2>&1 | tee {log}"
