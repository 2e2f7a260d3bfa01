"""`mtp init` and `mtp ui`: the command-line side of the tracking module."""
from mtp import config, tracking
from mtp.args import add_config_arg


def add_arguments(p):
    add_config_arg(p)


def run(args):
    info = tracking.init(config.load(args.config))
    print(f"tracking: {info['tracking_uri']} experiment {info['experiment_id']} parent run {info['parent_run_id']}")


def add_ui_arguments(p):
    add_config_arg(p)
    p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default %(default)s)")


def run_ui(args):
    return tracking.ui(config.load(args.config), args.port)
