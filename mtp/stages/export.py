"""`mtp export` (rule export_model): a trained model as a Hugging Face / vLLM directory (mtp.formats.export),
attached to its MLflow logged model when `mtp train` made one."""
from mtp import config, results
from mtp.args import add_config_arg, add_model_args, model_spec
from mtp.formats.export import export
from mtp.io import read_json


def add_arguments(p):
    add_config_arg(p)
    add_model_args(p)


def run(args):
    cfg = config.load(args.config)
    m = model_spec(cfg, args)
    out = export(m.dir)
    metrics = results.path(m, "metrics")
    model_id = results.read("metrics", read_json(metrics)).logged_model_id if metrics.exists() else None
    if model_id:  # trained by `mtp train` (not a hand-made checkpoint): its logged model gets the HF export
        from mtp import tracking
        tracking.log_hf_model(cfg, model_id, out["hf"])
    print(f"{m.name}: exported to {out['hf']}" + (f" and {out['drafter']}" if out["drafter"] else ""))
