"""How far the synthetic tasks are from learning: task accuracy at every checkpoint of trained models.

    python benchmarks/synthetic_curve.py MODEL_DIR [MODEL_DIR ...] > benchmarks/results/synthetic_curve.jsonl

MODEL_DIR is <results>/models/<dataset>/<size>-n<n> of an induction or polynomial model trained with
checkpoints (train.checkpoint_every). Training keeps only its two newest checkpoints: copy them as they
appear into MODEL_DIR/ckpt-all/ (a polling `cp -n`), which is read when present. Each checkpoint is scored with the stage's own functions
(induction: teacher-forced accuracy on the 2nd token of repeated names, 200 test stories;
polynomial: greedy exact match at m = 1, 200 tests). One JSON line per checkpoint.
"""
import json
import sys
from pathlib import Path

import torch

from mtp.checkpoint import load as load_checkpoint, model_config
from mtp.decoding.engine import generate
from mtp.evals import induction, polynomial
from mtp.tasks import induction as induction_task
from mtp.nn.model import ModelConfig, MTPModel
from mtp.tokenizer import Tokenizer

NUM_TESTS, SEED = 200, 0


def score(model, task, tok, ctx):
    if task == "induction":
        sequences, targets = induction.encode_tests(tok, induction_task.test_set(NUM_TESTS, SEED))
        preds = induction.predict(model, sequences, targets, ctx, 16, tok.eod_id)
        return {"induction_acc": induction.score(preds, sequences, targets)}

    def generate_fn(prompts, max_new_tokens, eod_id, batch_size):
        return generate(model, prompts, max_new_tokens, eod_id, batch_size=batch_size)
    return {"poly_acc_m1": polynomial.accuracies(generate_fn, tok, [1], NUM_TESTS, SEED, 32)[1]}


def main(dirs):
    for d in map(Path, dirs):
        final = load_checkpoint(d / "model.pt")
        cfg = ModelConfig(**model_config(final))
        tok = Tokenizer.load(Path(final["data_dir"]) / "tokenizer.json")
        folder = d / "ckpt-all" if (d / "ckpt-all").is_dir() else d / "ckpt"
        for ck in sorted(folder.glob("step-*.pt")):
            state = load_checkpoint(ck)
            model = MTPModel(cfg)
            model.load_state_dict(state["model"])
            model.eval()
            with torch.inference_mode():
                out = score(model, final["dataset"], tok, 256)
            print(json.dumps({"model": f"{final['dataset']}/{final['size']}-n{final['n']}", "step": state["step"],
                              "tokens_seen": state["state"]["tokens_seen"], **out}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
