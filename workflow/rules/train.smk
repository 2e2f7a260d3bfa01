def train_params(w):
    m = mtp.config.find_model(config, w.dataset, w.size, w.n)
    return digest([m["train"], config["model_presets"].get(w.size), config["seed"]])


rule train_model:
    input:
        R("data/{dataset}/meta.json"),
    output:
        R("models/{dataset}/{size}-n{n}/model.pt"),
        R("models/{dataset}/{size}-n{n}/metrics.json"),
    log:
        R("logs/train_model/{dataset}/{size}-n{n}.log"),
    params:
        cfg=train_params,
        launcher=lambda w: mtp.config.launcher(config, w.dataset, w.size, w.n),
    threads: JOB_THREADS
    resources:
        gpu=lambda w: mtp.config.find_model(config, w.dataset, w.size, w.n)["train"]["gpus"],
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} train --config {CFG} --dataset {wildcards.dataset} "
        "--size {wildcards.size} --n-heads {wildcards.n} 2>&1 | tee {log}"


rule export_model:
    input:
        R("models/{dataset}/{size}-n{n}/model.pt"),
    output:
        R("models/{dataset}/{size}-n{n}/hf/config.json"),
    log:
        R("logs/export_model/{dataset}/{size}-n{n}.log"),
    conda:
        CONDA_ENV
    shell:
        "mtp export --config {CFG} --dataset {wildcards.dataset} --size {wildcards.size} --n-heads {wildcards.n} 2>&1 | tee {log}"
