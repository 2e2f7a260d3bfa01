"""`mtp import meta`: a released multi-token checkpoint (Meta's layout, mtp.formats.meta) as an mtp model
directory."""
import argparse

from mtp.formats import meta


def add_arguments(p):
    sub = p.add_subparsers(dest="format", metavar="<format>", required=True)
    p_meta = sub.add_parser("meta", help="Meta's multi-token release (facebook/multi-token-prediction)",
                            description=meta.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p_meta.add_argument("src", help="directory with params.json and consolidated.pth (or consolidated.00.pth), "
                        "e.g. 7B_1T_4/; tokenizer.model in it or its parent")
    p_meta.add_argument("--out", required=True, help="mtp model directory to write (model.pt, data/tokenizer.json)")


def run(args):
    cfg = meta.import_meta(args.src, args.out)
    print(f"imported {args.src}: n={cfg.n_heads} heads, {cfg.n_trunk} trunk layers, dim {cfg.dim}, "
          f"vocab {cfg.vocab_size} -> {args.out} (decode, export and vLLM take it: docs in mtp/formats/meta.py)")
