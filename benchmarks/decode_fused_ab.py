"""The fused drafting heads, measured: the decoding engine before (every head its own block) and after
(model.FusedHeads: heads 1..k+1 as one block) on one trained model, at 1 and 2 threads, in interleaved rounds.

    python benchmarks/decode_fused_ab.py MODEL_DIR [ROUNDS] > benchmarks/results/decode_fused_ab.jsonl

MODEL_DIR: <results>/models/<dataset>/<size>-n<n> of a trained n > 1 model (its val split supplies 16 prompts
of 64 tokens; 64 new tokens each). The "before" engine is mtp/decoding/engine.py at commit 26f94e5, read from git.
One JSON line per (threads, batch size): tokens/s of each engine and decoder (median of rounds), the
speed-up of speculative over greedy per engine (median of per-round ratios, min, max), and whether each
engine's speculative output equals its greedy output.
"""
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from mtp import checkpoint, decode, measure
from mtp.data import TokenData
from mtp.decoding.timing import val_prompts

BEFORE = "26f94e5"


def old_engine():
    src = subprocess.run(["git", "show", f"{BEFORE}:mtp/decoding/engine.py"], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent).stdout
    path = Path(tempfile.mkdtemp()) / "decode_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("decode_before", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(model_dir, rounds=5):
    model, payload = checkpoint.load_model(model_dir)
    model.cfg.n_future = model.cfg.n_heads  # the before engine's name for it
    prompts = val_prompts(TokenData(payload["data_dir"], "val"), 16, 64)
    engines = {"before": old_engine(), "after": decode}
    k = model.cfg.n_heads - 1
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for bs in (1, 8):
            last = {}

            def call(eng, kk, key):
                def run():
                    last[key] = engines[eng].decode(model, prompts, 64, None, kk, bs)[0]
                return run
            configs = {(e, d): call(e, kk, (e, d)) for e in engines for d, kk in (("ar", 0), ("spec", k))}
            times = measure.interleaved(configs, rounds, warmup=1)
            toks = len(prompts) * 64
            row = {"threads": threads, "batch_size": bs, "rounds": rounds, "model": str(model_dir)}
            for e in engines:
                rate = {d: measure.rate_summary(toks, times[(e, d)]) for d in ("ar", "spec")}
                r = measure.ratio(rate["spec"]["tokens_per_s_all"], rate["ar"]["tokens_per_s_all"])
                row[e] = {"ar_tokens_per_s": rate["ar"]["tokens_per_s"], "spec_tokens_per_s": rate["spec"]["tokens_per_s"],
                          "speedup": r["median"], "speedup_min": r["min"], "speedup_max": r["max"],
                          "unstable": r["unstable"], "lossless": last[(e, "spec")] == last[(e, "ar")]}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5)
