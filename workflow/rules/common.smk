# Sweep expansion and input functions only.
import math

from snakemake.exceptions import WorkflowError

import mtp.config
import mtp.results
from mtp.io import digest
from mtp.tasks import TASKS

mtp.config.validate(config, source="config")  # checks a schema cannot state (n < layers, known sizes)
RESULTS = config["results"]
MODELS = mtp.config.models(config)
CFG = mtp.config.write_resolved(config)  # <results>/config.yaml: what every `mtp` call reads
CONDA_ENV = f"../../envs/{config['software_env']}.yaml"  # used with --sdm conda


def mtp_cores(workflow):
    """--cores; 1 on a cluster without --cores (Snakemake's Slurm or Kubernetes executor), where each job gets
    its own allocation (the profile's cpus_per_task) and nothing else runs beside it."""
    try:
        return workflow.cores or 1
    except WorkflowError:
        return 1


# Threads: tiny models train faster as two 1-thread jobs than as one 2-thread job, so work jobs take
# half the cores (at most 4); timing jobs use at most 4 threads and run alone: every job holds one share
# of the named resource `machine`, a timing job all MACHINE_SHARES of them (workflow/profiles/default
# gives the machine that many; a cluster profile sets no limit: there each job has its own allocation).
MACHINE_SHARES = 64
TIMING_JOB = {"machine": MACHINE_SHARES}
CORES = mtp_cores(workflow)
JOB_THREADS = max(1, min(4, CORES // 2))
TIMING_THREADS = min(CORES, 4)
VLLM_THREADS = max(1, TIMING_THREADS // 2)  # vLLM keeps two processes busy (engine core, worker)
# A study that trains one model (configs/smollm2.yaml) has nothing to run beside it: it takes the timing threads.
TRAIN_THREADS = TIMING_THREADS if len(MODELS) == 1 else JOB_THREADS


def R(path):
    return f"{RESULTS}/{path}"


def model_path(m, name):
    return f"{m.dir}/{name}"


def result_output(key):
    """A rule's output: result `key` of the model the wildcards name (file names: mtp/results.py)."""
    return R("models/{dataset}/{size}-n{n}/" + mtp.results.file(key))


def section(*keys):
    """Digest of config sections: a rule's params, so that only a relevant change reruns it."""
    return digest([config.get(k) for k in keys])


def models_where(pred):
    return [m for m in MODELS if pred(m)]


def task(m):
    return mtp.config.task_of(config["datasets"][m.dataset])


def draft_model(m):
    """vLLM's draft_model baseline: the sweep's smallest n=1 model on the same dataset with at most a quarter
    of m's parameters, or None (mtp.config.draft_model_for)."""
    return mtp.config.draft_model_for(config, m)


def report_inputs():
    """Every per-model result the enabled stages produce (the report aggregates them; mtp.results says which)."""
    return [str(p) for p in mtp.results.expected_paths(config, MODELS)]


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    size=r"[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*?",
    n=r"\d+",
