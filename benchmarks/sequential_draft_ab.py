"""Sequential heads' drafting, eager (today's Python loop over the k modules) vs compiled (decode.compile: the k
module passes as one torch.compile graph), measured side by side in interleaved rounds (mtp.measure), one thread
(decode.threads of the studies):

1. cost per drafting step: one propose() (the k module passes over the window, after a speculative forward) against
   one decode forward of the same model (trunk + head 1 over the k+1 block), at batch 1 and 8, on the model given
   or, without one, a deep-preset (dim 128, 12 layers, n = 4) model with random weights (the cost does not depend
   on them);
2. with trained models (SEQ and PAR: the head-types study's <results>/models/<dataset>/<size>-sequential-n<n> and
   <size>-n<n>): greedy autoregressive and speculative decoding of both models on the same val prompts (16 x 64
   tokens, 64 new tokens; the prompts whose greedy continuation is degenerate under either model dropped, as the
   decode stage drops them), all five configurations in the same rounds: each model's speed-up over its own
   greedy decoding (median of per-round ratios), and the sequential model's speed-up over the parallel model's
   (per round), with the tokens per forward and whether every speculative output equals the greedy one.

    python benchmarks/sequential_draft_ab.py [--rounds R] [SEQ_MODEL_DIR PAR_MODEL_DIR ...] > raw.jsonl

One JSON line per (part, model pair, batch size).
"""
import argparse
import json
import statistics

import torch

from mtp import checkpoint, measure
from mtp.data import TokenData
from mtp.decoding import engine as D
from mtp.decoding.kvcache import KVCache
from mtp.decoding.timing import val_prompts
from mtp.nn.model import ModelConfig, MTPModel


def random_deep():
    torch.manual_seed(0)
    return MTPModel(ModelConfig(vocab_size=257, dim=128, n_layers=12, n_attn_heads=4, n_heads=4,
                                head_type="sequential", max_seq_len=512)).eval()


def step_costs(model, label, prompts, rounds, calls=50):
    """Per batch size: ms per propose() eager and compiled, and per decode forward, interleaved."""
    k = model.cfg.n_heads - 1
    for bs in (1, 8):
        with torch.inference_mode():
            cache = KVCache(model, bs, 256, k)
            x, drafts = D.start(model, cache, prompts[:bs], k)
            g, a, x, drafts = D.spec_step(model, cache, x, drafts)  # a state after a verification
            prop = cache.proposer
            eager = prop.draft
            model.behaviour.compile_drafting = True
            compiled = model.behaviour.proposer(model, k).draft
            model.behaviour.compile_drafting = False
            block = torch.cat([x[:, None], drafts], dim=1)
            outs = {}

            def propose(fn, name):
                def run():
                    prop.draft = fn
                    for _ in range(calls):
                        outs[name] = prop.propose(cache, None, a, x)
                return run

            def forward():
                for _ in range(calls):
                    D.forward(model, cache, block)
                    cache.rollback(block.shape[1])
            configs = {"propose_eager": propose(eager, "eager"), "propose_compiled": propose(compiled, "compiled"),
                       "forward": forward}
            times = measure.interleaved(configs, rounds, warmup=1)
        ms = {name: [1e3 * s / calls for s in t] for name, t in times.items()}
        med = {name: statistics.median(v) for name, v in ms.items()}
        print(json.dumps({"part": "step_cost", "model": label, "batch_size": bs, "k": k, "rounds": rounds,
                          "threads": torch.get_num_threads(), "ms_median": med, "ms_all": ms,
                          "same_drafts": torch.equal(outs["eager"], outs["compiled"]),
                          "drafting_over_forward": {"eager": med["propose_eager"] / med["forward"],
                                                    "compiled": med["propose_compiled"] / med["forward"]}}),
              flush=True)


def kept_prompts(models, prompts, new):
    """The prompts whose greedy continuation is not degenerate under any of the models (measure.output_quality)."""
    keep = set(range(len(prompts)))
    for model in models:
        keep &= set(measure.output_quality(D.decode(model, prompts, new, None, 0, 8)[0])["kept"])
    return [prompts[i] for i in sorted(keep)]


def end_to_end(seq_dir, par_dir, rounds, new=64):
    seq, payload = checkpoint.load_model(seq_dir)
    par, _ = checkpoint.load_model(par_dir)
    ks = {"seq": seq.cfg.n_heads - 1, "par": par.cfg.n_heads - 1}
    prompts = kept_prompts([seq, par], val_prompts(TokenData(payload["data_dir"], "val"), 16, 64), new)
    for bs in (1, 8):
        last = {}

        def call(name, model, k, compiled=False):
            def run():
                model.behaviour.compile_drafting = compiled
                last[name] = D.decode(model, prompts, new, None, k, bs)
            return run
        configs = {"seq_ar": call("seq_ar", seq, 0), "seq_eager": call("seq_eager", seq, ks["seq"]),
                   "seq_compiled": call("seq_compiled", seq, ks["seq"], True),
                   "par_ar": call("par_ar", par, 0), "par_spec": call("par_spec", par, ks["par"])}
        times = measure.interleaved(configs, rounds, warmup=1)
        rate = {name: [last[name][1].new_tokens / s for s in t] for name, t in times.items()}
        speedup = {"seq_eager": measure.ratio(rate["seq_eager"], rate["seq_ar"]),
                   "seq_compiled": measure.ratio(rate["seq_compiled"], rate["seq_ar"]),
                   "par": measure.ratio(rate["par_spec"], rate["par_ar"])}
        print(json.dumps({
            "part": "end_to_end", "seq_model": str(seq_dir), "par_model": str(par_dir), "batch_size": bs,
            "rounds": rounds, "threads": torch.get_num_threads(), "prompts": len(prompts), "new_tokens": new,
            "tokens_per_s_median": {n: statistics.median(r) for n, r in rate.items()},
            "speedup": {n: {"median": s["median"], "min": s["min"], "max": s["max"], "unstable": s["unstable"]}
                        for n, s in speedup.items()},
            "seq_over_par": {s: measure.ratio(speedup[s]["all"], speedup["par"]["all"]) for s in ("seq_eager", "seq_compiled")},
            "tokens_per_forward": {"seq": last["seq_compiled"][1].tokens_per_forward,
                                   "par": last["par_spec"][1].tokens_per_forward},
            "lossless": {"seq_eager": last["seq_eager"][0] == last["seq_ar"][0],
                         "seq_compiled": last["seq_compiled"][0] == last["seq_ar"][0],
                         "par": last["par_spec"][0] == last["par_ar"][0]}}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("pairs", nargs="*", help="SEQ_MODEL_DIR PAR_MODEL_DIR, repeated")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch._dynamo.config.recompile_limit = 64  # several models in one process: never fall back to eager unseen
    g = torch.Generator().manual_seed(0)
    if not args.pairs:
        model = random_deep()
        step_costs(model, "deep-sequential-n4 (random weights)",
                   [torch.randint(0, 256, (64,), generator=g).tolist() for _ in range(8)], args.rounds)
    for seq_dir, par_dir in zip(args.pairs[::2], args.pairs[1::2]):
        model, payload = checkpoint.load_model(seq_dir)
        step_costs(model, seq_dir, val_prompts(TokenData(payload["data_dir"], "val"), 8, 64), args.rounds)
        end_to_end(seq_dir, par_dir, args.rounds)


if __name__ == "__main__":
    main()
