"""`mtp ui`: a light MLflow UI of the study's store on 127.0.0.1."""
from mtp import config, tracking
from mtp.args import add_config_arg


def add_arguments(p):
    add_config_arg(p)
    p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default %(default)s)")


def run(args):
    return tracking.ui(config.load(args.config), args.port)
