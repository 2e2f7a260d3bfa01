def vllm_inputs(w):
    """The decode result (its native figures are the cross-check's reference) and the draft model's export."""
    m = mtp.config.find_model(config, w.dataset, w.size, w.n)
    out = [str(mtp.results.path(m, "decode"))]
    d = draft_model(m)
    if config["vllm"]["draft_model"] and d is not None:
        out.append(model_path(d, "hf/config.json"))
    return out


rule time_vllm:
    input:
        vllm_inputs,
        model=R("models/{dataset}/{size}-n{n}/hf/config.json"),  # the export vLLM serves
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
        "OMP_NUM_THREADS={VLLM_THREADS} mtp vllm --config {input.config} --model {input.model} 2>&1 | tee {log}"
