"""`mtp tokenize` (rule tokenize_corpus): a dataset of the config into <results>/data/<dataset>/ (mtp.data)."""
from mtp import config, data
from mtp.args import add_config_arg


def add_arguments(p):
    add_config_arg(p)
    p.add_argument("--dataset", required=True, help="dataset name from the config's `datasets`")


def run(args):
    meta = data.tokenize(config.load(args.config), args.dataset)
    print(f"{args.dataset}: {meta['tokens_train']:,} train / {meta['tokens_val']:,} val tokens, "
          f"vocab {meta['vocab_size']} ({meta['tokenizer']})")
