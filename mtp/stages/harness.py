"""What every per-model stage shares (`mtp decode`, `mtp vllm`, `mtp eval code|<task>`): the model the arguments
name, its MLflow child run (tagged with the model's keys), and its result written where the result-kinds table
says (mtp.results) and attached to the run."""
from contextlib import contextmanager

from mtp import config, results, tracking
from mtp.args import model_spec
from mtp.io import write_json


def model_from_args(args):
    """--config and the model's arguments (mtp.args.add_model_args) -> (the config, the model's mtp.spec.ModelSpec)."""
    cfg = config.load(args.config)
    return cfg, model_spec(cfg, args)


@contextmanager
def model_run(cfg, entry, stage):
    """The MLflow child run of `stage` for model `entry` (mtp.tracking.child_run with its ModelSpec.run_keys)."""
    with tracking.child_run(cfg, stage, **entry.run_keys()) as run:
        yield run


def save_result(run, entry, key, result, log=True):
    """Write result `key` of model `entry` (mtp.results; checked against its class in mtp.result_types), log its "metrics" to the run (unless log=False: logged
    already) and attach the file -> its path."""
    path = results.path(entry, key)
    result.update(results.checked(key, result))  # the caller's result is what was written: stamped with its schema
    write_json(path, result)
    if log:
        run.log(result["metrics"])
    run.artifact(path)
    return path


def device():
    """cuda when there is a GPU, else cpu (the evaluation stages)."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"
