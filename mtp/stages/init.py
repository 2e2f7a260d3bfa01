"""`mtp init` (rule init_tracking): the MLflow store, the study's experiment and its parent run."""
from mtp import config, tracking
from mtp.args import add_config_arg


def add_arguments(p):
    add_config_arg(p)


def run(args):
    info = tracking.init(config.load(args.config))
    print(f"tracking: {info['tracking_uri']} experiment {info['experiment_id']} parent run {info['parent_run_id']}")
