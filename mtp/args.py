"""Command-line arguments that several `mtp <stage>` commands share (no stage imports mtp.cli: it imports
the stages, by name)."""


def add_config_arg(p):
    p.add_argument("--config", default="config.yaml", metavar="YAML",
                   help="study config (default: %(default)s; Snakemake passes <results>/config.yaml)")


def add_model_args(p):
    """--model PATH, or --dataset/--size/--n-heads: which model of the sweeps (model_spec reads them)."""
    p.add_argument("--model", metavar="PATH",
                   help="the model's folder or a file in it, e.g. results/models/code/1M-n2/model.pt (the rules pass "
                        "their {input} or {output} file); instead of --dataset, --size and --n-heads")
    p.add_argument("--dataset", help="dataset name from the config's `datasets`")
    p.add_argument("--size", help="the model's slot: its size preset, e.g. 1M (mtp/presets.py PRESETS), with "
                                  "-init, -s<seed> and -<head_type> as the sweep names it (e.g. deep-medusa)")
    p.add_argument("--n-heads", dest="n_heads", type=int, metavar="N",
                   help="number of output heads of the model (n in the paper)")


def model_spec(cfg, args):
    """The mtp.spec.ModelSpec that the arguments of add_model_args name."""
    from mtp import UserError, config
    if args.model:
        return config.find_model_at(cfg, args.model)
    missing = [f for f, v in (("--dataset", args.dataset), ("--size", args.size), ("--n-heads", args.n_heads))
               if v is None]
    if missing:
        raise UserError(f"name the model: --model PATH (its folder or a file in it), or give {', '.join(missing)} "
                        f"too (--dataset, --size and --n-heads together)")
    return config.find_model(cfg, args.dataset, args.size, args.n_heads)
