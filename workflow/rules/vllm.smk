def vllm_inputs(w):
    m = mtp.config.find_model(config, w.dataset, w.size, w.n)
    out = [model_path(m, "hf/config.json"), str(mtp.results.path(m, "decode"))]
    d = draft_model(m)
    if config["vllm"]["draft_model"] and d is not None:
        out.append(model_path(d, "hf/config.json"))
    return out


rule time_vllm:
    input:
        vllm_inputs,
        config=ancient(CFG),  # the resolved config every `mtp` call reads
    output:
        result_output("vllm"),
    log:
        R("logs/time_vllm/{dataset}/{size}-n{n}.log"),
    params:
        cfg=section("vllm", "decode"),
    threads: TIMING_THREADS
    resources:
        **TIMING_JOB,  # nothing runs beside it
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={VLLM_THREADS} mtp vllm --config {input.config} --dataset {wildcards.dataset} --size {wildcards.size} "
        "--n-heads {wildcards.n} 2>&1 | tee {log}"
