"""Command-line arguments that several `mtp <stage>` commands share (no stage imports mtp.cli: it imports
the stages, by name)."""


def add_config_arg(p):
    p.add_argument("--config", default="config.yaml", metavar="YAML",
                   help="study config (default: %(default)s; Snakemake passes <results>/config.yaml)")


def add_model_args(p):
    """--dataset/--size/--n: which model of the sweep."""
    p.add_argument("--dataset", required=True, help="dataset name from the config's `datasets`")
    p.add_argument("--size", required=True, help="size preset, e.g. 1M (see mtp/presets.py PRESETS)")
    p.add_argument("--n-heads", dest="n_heads", type=int, required=True, metavar="N",
                   help="number of output heads of the model (n in the paper)")
