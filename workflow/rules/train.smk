import mtp.formats.gguf
import mtp.formats.hf_llama


def train_params(w):
    m = mtp.config.find_model(config, w.dataset, w.size, w.n)
    extra = [m.init_from] if m.init_from else []  # a from-scratch model's digest is what it always was
    return digest([m.train, config["model_presets"].get(m.size), m.seed, *extra])  # m.seed: the config's seed unless the sweep has seeds


def train_inputs(w):
    """The dataset, and the source of heads added to a model: mtp:<dir>'s model.pt, hf:<dir>'s config.json and
    weights file(s), or the gguf:<file> (a changed source retrains)."""
    m = mtp.config.find_model(config, w.dataset, w.size, w.n)
    kind, _, src = (m.init_from or "").partition(":")
    if kind == "hf":
        source = [f"{src}/config.json", *(str(f) for f in mtp.formats.hf_llama.weight_files(src))]
    elif kind == "gguf":
        source = [str(mtp.formats.gguf.resolve(src))]
    else:
        source = [f"{src}/model.pt"] if kind == "mtp" else []
    return [R(f"data/{w.dataset}/meta.json"), *source]


def train_priority(w):
    """Longest training first (log10 of its estimated FLOPs): a long job that starts last sets the wall time."""
    return math.log10(1 + mtp.config.train_flops(config, mtp.config.find_model(config, w.dataset, w.size, w.n)))


rule train_model:
    input:
        train_inputs,
        config=ancient(CFG),  # the resolved config every `mtp` call reads
    output:
        model=R("models/{dataset}/{size}-n{n}/model.pt"),
        metrics=result_output("metrics"),
    log:
        R("logs/train_model/{dataset}/{size}-n{n}.log"),
    params:
        cfg=train_params,
        launcher=lambda w: mtp.config.launcher(config, w.dataset, w.size, w.n),
    threads: TRAIN_THREADS
    priority: train_priority
    resources:
        gpu=lambda w: mtp.config.find_model(config, w.dataset, w.size, w.n).train["gpus"],
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} train --config {input.config} --model {output.model} 2>&1 | tee {log}"


rule export_model:
    input:
        model=R("models/{dataset}/{size}-n{n}/model.pt"),
        config=ancient(CFG),  # the resolved config every `mtp` call reads
    output:
        R("models/{dataset}/{size}-n{n}/hf/config.json"),
    log:
        R("logs/export_model/{dataset}/{size}-n{n}.log"),
    conda:
        CONDA_ENV
    shell:
        "mtp export --config {input.config} --model {input.model} 2>&1 | tee {log}"
