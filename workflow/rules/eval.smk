rule score_code:
    input:
        model=R("models/{dataset}/{size}-n{n}/model.pt"),
        config=ancient(CFG),  # the resolved config every `mtp` call reads
    output:
        result_output("code"),
    log:
        R("logs/score_code/{dataset}/{size}-n{n}.log"),
    params:
        cfg=lambda w: digest([config["eval"]["code"], config["seed"]]),
    threads: JOB_THREADS
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} mtp eval code --config {input.config} --model {input.model} 2>&1 | tee {log}"


rule score_synthetic:
    input:
        model=R("models/{dataset}/{size}-n{n}/model.pt"),
        config=ancient(CFG),  # the resolved config every `mtp` call reads
    output:
        R("models/{dataset}/{size}-n{n}/" + mtp.results.task_file("{task}")),
    log:
        R("logs/score_{task}/{dataset}/{size}-n{n}.log"),
    params:
        cfg=lambda w: digest([config["eval"]["synthetic"], config["seed"]]),
    wildcard_constraints:
        task="|".join(TASKS),
    threads: JOB_THREADS
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} mtp eval {wildcards.task} --config {input.config} --model {input.model} 2>&1 | tee {log}"
