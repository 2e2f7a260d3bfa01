"""Acceptance of a trained model's heads on three prompt sets, untimed: decode.prompts val (windows of the training
corpus's val split), humaneval (raw) and humaneval-templated (in eval.code.prompt_templates.humaneval), each prompt alone (batch 1), k = n - 1 drafts, no stop at the end of document (as the decode stage).
    python benchmarks/acceptance_by_prompts.py <config.yaml> <dataset> <size slot> <n> [num_prompts] [max_new]
Prints one JSON line per prompt set: acceptance per draft position, tokens per forward."""
import json
import sys

import torch

from mtp import checkpoint, config
from mtp.decoding import engine as D
from mtp.decoding import timing as DT


def main(cfg_path, dataset, slot, n, num_prompts=8, max_new=128):
    cfg = config.load(cfg_path)
    entry = config.find_model(cfg, dataset, slot, int(n))
    model, payload = checkpoint.load_model(entry.dir)
    for prompts in ("val", "humaneval", "humaneval-templated"):
        dc = {**cfg["decode"], "prompts": prompts, "num_prompts": int(num_prompts), "prompt_len": 128}
        with torch.no_grad():
            counts = D.acceptance_counts(model, DT.study_prompts({**cfg, "decode": dc}, payload["data_dir"]),
                                         int(max_new))
        drafts = sum(c["num_drafts"] for c in counts)
        per_pos = [sum(c["num_accepted_tokens_per_pos"][i] for c in counts) / drafts for i in range(int(n) - 1)]
        accepted = sum(c["num_accepted_tokens"] for c in counts)
        print(json.dumps({"model": entry.name, "prompts": prompts, "num_prompts": int(num_prompts),
                          "max_new_tokens": int(max_new), "accept_rate_per_pos": per_pos,
                          "tokens_per_forward": 1 + accepted / drafts, "drafts": drafts}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
