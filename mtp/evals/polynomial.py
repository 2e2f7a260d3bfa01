"""Polynomial arithmetic (Gloeckle et al. 2024, Section 4.2): greedy exact-match scoring of a model.

The task (ring, text format, training documents, test sets and their separation): mtp/tasks/polynomial.py.
"""
from mtp.tasks.polynomial import ANSWER_LEN, test_set


# ---- scoring ------------------------------------------------------------------------------------

def correct(predictions, answers):
    """Per test item, 1 when the prediction's text up to the first newline is the answer, else 0."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    return [int(p.split("\n", 1)[0] == a) for p, a in zip(predictions, answers)]


def score(predictions, answers):
    """Exact-match accuracy: the mean of `correct` (0.0 without answers)."""
    items = correct(predictions, answers)
    return sum(items) / len(items) if items else 0.0


def correct_by_m(generate_fn, tokenizer, ms, num_tests, seed, batch_size):
    """{m: [0/1 per test item]}, item i being the i-th of test_set(m, num_tests, seed), using
    generate_fn(prompts, max_new_tokens, eod_id, batch_size) -> new token ids per prompt. Each prompt is
    <eod> + "expr=", as after a document boundary in training."""
    out = {}
    for m in ms:
        tests = test_set(m, num_tests, seed)
        prompts = [[tokenizer.eod_id] + tokenizer.encode(prompt) for prompt, _ in tests]
        # answer + "\n": a byte tokenizer needs 6 tokens, any other at most that many
        new = generate_fn(prompts, max_new_tokens=ANSWER_LEN + 1, eod_id=tokenizer.eod_id, batch_size=batch_size)
        out[m] = correct([tokenizer.decode(ids) for ids in new], [answer for _, answer in tests])
    return out


def accuracies(generate_fn, tokenizer, ms, num_tests, seed, batch_size):
    """{m: greedy exact-match accuracy}: the mean of correct_by_m's items."""
    items = correct_by_m(generate_fn, tokenizer, ms, num_tests, seed, batch_size)
    return {m: sum(v) / len(v) if v else 0.0 for m, v in items.items()}


def summary(acc, max_ops_train):
    """MLflow metrics from {m: accuracy}: poly_acc_m<m>, in-domain (m <= max_ops_train) and out-of-domain means."""
    metrics = {f"poly_acc_m{m}": a for m, a in sorted(acc.items())}
    ind = [a for m, a in acc.items() if m <= max_ops_train]
    ood = [a for m, a in acc.items() if m > max_ops_train]
    metrics["poly_acc_in_domain"] = sum(ind) / len(ind) if ind else None
    metrics["poly_acc_out_of_domain"] = sum(ood) / len(ood) if ood else None
    return metrics


def evaluate_model(cfg, model_entry, run, dev):
    """Score one trained model on device `dev` (the stage `mtp eval polynomial` writes the result,
    eval_polynomial.json; run: its MLflow child run, which gets the parameters).

    The file holds accuracy_by_m and, per test item, correct_by_m {m: [0/1, ...]} (item i = the i-th of
    test_set(m, num_tests, seed)), which the report's paired bootstrap needs.

    Test sets use cfg["seed"] (see the module docstring for why they never meet training data);
    m runs over 1..eval.synthetic.max_ops, and m above the dataset's training max_ops is out of domain.
    """
    from pathlib import Path

    import torch

    from mtp.checkpoint import load_model
    from mtp.decoding.engine import generate
    from mtp.tokenizer import Tokenizer

    syn = cfg["eval"]["synthetic"]
    max_ops_train = cfg["datasets"][model_entry.dataset]["source"].get("max_ops", 5)
    ms = range(1, syn["max_ops"] + 1)
    model, payload = load_model(model_entry.dir, device=dev)
    tok = Tokenizer.load(Path(payload["data_dir"]) / "tokenizer.json")

    def generate_fn(prompts, max_new_tokens, eod_id, batch_size):
        return generate(model, prompts, max_new_tokens, eod_id, temperature=0.0, batch_size=batch_size)

    with torch.no_grad():
        items = correct_by_m(generate_fn, tok, ms, syn["num_tests"], cfg["seed"], syn["batch_size"])
    acc = {m: sum(v) / len(v) if v else 0.0 for m, v in items.items()}
    run.params({"num_tests": syn["num_tests"], "test_seed": cfg["seed"], "max_ops_train": max_ops_train,
                "max_ops_eval": max(ms), "batch_size": syn["batch_size"]})
    # correct_by_m: item i of m is the i-th of test_set(m, num_tests, seed): the report pairs models by it
    return {**model_entry.run_keys(), "task": "polynomial", "num_tests": syn["num_tests"], "test_seed": cfg["seed"],
            "max_ops_train": max_ops_train, "accuracy_by_m": {str(m): a for m, a in acc.items()},
            "correct_by_m": {str(m): v for m, v in items.items()}, "metrics": summary(acc, max_ops_train)}
