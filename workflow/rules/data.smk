import mtp.formats.gguf
import mtp.tokenizer


rule init_tracking:
    input:
        config=ancient(CFG),  # the resolved config every `mtp` call reads
    output:
        R("mlflow/parent.json"),
    log:
        R("logs/init_tracking.log"),
    params:
        cfg=section("tracking", "results"),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mtp init --config {input.config} 2>&1 | tee {log}"


def tokenize_inputs(w):
    """The study's MLflow parent run, and for tokenizer kind hf the model directory's tokenizer files, for kind gguf
    the GGUF file (a changed tokenizer re-tokenizes)."""
    tk = config["datasets"][w.dataset]["tokenizer"]
    files = {"hf": lambda: mtp.tokenizer.source_files(tk["path"]), "gguf": lambda: [mtp.formats.gguf.resolve(tk["path"])]}
    return [R("mlflow/parent.json"), *files.get(tk["kind"], list)()]


rule tokenize_corpus:
    input:
        tokenize_inputs,
        config=ancient(CFG),  # the resolved config every `mtp` call reads
    output:
        multiext(R("data/{dataset}/"), "train.bin", "val.bin", "tokenizer.json", "meta.json"),
    log:
        R("logs/tokenize_corpus/{dataset}.log"),
    params:
        cfg=lambda w: digest([config["datasets"][w.dataset], config["seed"]]),
    threads: JOB_THREADS
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} RAYON_NUM_THREADS={threads} mtp tokenize --config {input.config} --dataset {wildcards.dataset} 2>&1 | tee {log}"
