"""`mtp <stage>`: every pipeline stage as a plain command (Snakemake rules call these).

Each stage is one module of mtp/stages/ with `add_arguments(parser)` and `run(args)`; this file only
wires them up and turns UserError into one line on stderr with exit status 2.
"""
import argparse
import importlib
import sys

from mtp import UserError, __version__

# name -> (its module under mtp/stages/, one-line help)
STAGES = {
    "init": ("mtp.stages.init", "create the MLflow store, experiment and the study's parent run (rule init_tracking)"),
    "tokenize": ("mtp.stages.tokenize", "tokenize a dataset of the config into results/data/<dataset>/ (rule tokenize_corpus)"),
    "train": ("mtp.stages.train", "train one model of the sweep, resuming from its last checkpoint (rule train_model)"),
    "export": ("mtp.stages.export", "export a trained model as a Hugging Face / vLLM directory (rule export_model)"),
    "decode": ("mtp.stages.decode", "time greedy vs self-speculative decoding natively (rule time_decoding)"),
    "vllm": ("mtp.stages.vllm", "time the model inside vLLM: no speculation, own heads, ngram, draft model (rule time_vllm)"),
    "eval": ("mtp.stages.eval", "score a model: code (HumanEval/MBPP pass@k) or a synthetic task (polynomial, induction)"),
    "report": ("mtp.stages.report", "tables, plots and the claims check of the whole study (rule build_report)"),
    "import": ("mtp.stages.import_checkpoint", "import a released multi-token checkpoint (Meta's layout) as an mtp model directory"),
    "bench": ("mtp.stages.bench", "benchmarks: train (memory, step time, FLOP/s), decode, vllm; prints one JSON line"),
    "ui": ("mtp.stages.ui", "open a light MLflow UI on 127.0.0.1"),
}

EPILOG = """Every stage reads the study config (default: config.yaml; Snakemake passes
<results>/config.yaml, the resolved config of the run). `mtp <stage> --help` explains a stage.
Documentation: README.md."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mtp", description="Multi-token prediction (Gloeckle et al., ICML 2024): train n-head models, "
        "decode self-speculatively, score benchmarks, report.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mtp {__version__}")
    sub = parser.add_subparsers(dest="stage", metavar="<stage>")
    for name, (module, help_) in STAGES.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module, _stage=name)
        importlib.import_module(module).add_arguments(p)
    return parser


def preload_extensions(argv):
    """Import the `extensions` of the config named by --config before the parser is built: their synthetic
    tasks are `mtp eval` subcommands and their benchmarks --benchmark choices. A config that cannot be read
    is left to the stage, which says why."""
    import yaml

    from mtp.config import load_extensions
    path = next((b for a, b in zip(argv, argv[1:]) if a == "--config"), None)
    path = path or next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    try:
        with open(path or "config.yaml") as f:
            raw = yaml.safe_load(f)
    except (OSError, ValueError, yaml.YAMLError):  # unreadable, not UTF-8, not YAML: the stage says why
        return
    if isinstance(raw, dict) and isinstance(raw.get("extensions"), list):
        load_extensions(raw, path or "config.yaml")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        preload_extensions(argv)
    except UserError as e:
        print(f"mtp: error: {e}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.stage:
        parser.print_help()
        return 2
    mod = importlib.import_module(args._module)
    try:
        result = mod.run(args)
    except UserError as e:
        print(f"mtp {args.stage}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mtp {args.stage}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a full disk or file-size limit outside the atomic writers (caches, libraries)
        from mtp.io import NO_SPACE
        if e.errno not in NO_SPACE:
            raise
        print(f"mtp {args.stage}: error: {e.filename or 'a file'}: {e.strerror}; free space (or raise the limit) "
              f"and rerun", file=sys.stderr)
        return 2
    return result or 0


if __name__ == "__main__":
    sys.exit(main())
