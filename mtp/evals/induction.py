"""Induction (Gloeckle et al. 2024, Section 4.1): teacher-forced scoring of a model on repeated names.

The task (stories, names, training documents, test sets): mtp/tasks/induction.py.

Metric. At every occurrence of a name after its first, predict the name's SECOND token from
the context up to and including its first token (teacher forced: one forward pass, argmax
of head 1 at the position of the first token). test_set returns character offsets of those
second characters; token_targets maps them to token indices and checks the 2-token split.
"""
from mtp.tasks.induction import test_set


# ---- scoring ------------------------------------------------------------------------------------

def token_targets(tokenizer, text, offsets):
    """Token indices of the characters at `offsets`, each checked to be a name's second token:
    one token covers exactly that character and the token before covers exactly the one before."""
    from mtp import UserError
    spans = tokenizer.hf.encode(text, add_special_tokens=False).offsets
    index = {span: k for k, span in enumerate(spans)}
    out = []
    for o in offsets:
        k = index.get((o, o + 1))
        if k is None or k == 0 or spans[k - 1] != (o - 1, o):
            raise UserError(f"induction: the name {text[o - 1:o + 1]!r} is not two tokens under this dataset's "
                            f"tokenizer; the task needs `tokenizer: {{kind: byte}}`")
        out.append(k)
    return out


def windows(length, ctx):
    """Cover positions 0..length-1 with windows of at most ctx tokens: (start, lo, hi) scores
    positions lo <= p < hi using tokens start..start+ctx-1. The first window scores all of
    its positions, each later one (stride ctx//2) its last ctx//2, so every scored p > 0 has
    p-1 in its window and at least ctx - ctx//2 tokens of context after the first window."""
    stride = max(1, ctx // 2)
    out = [(0, 0, min(ctx, length))]
    while out[-1][2] < length:
        covered = out[-1][2]
        start = covered - (ctx - stride)
        out.append((start, covered, min(start + ctx, length)))
    return out


def predict(model, sequences, targets, ctx, batch_size, pad_id, device="cpu"):
    """Teacher-forced head-1 predictions: for each sequence, argmax of logits at p-1 for each p in
    its targets, with at most ctx tokens of context (see windows). -> list of lists of token ids."""
    import torch
    items = []  # (sequence index, window tokens, [(index in targets, local position)])
    for s, (ids, tg) in enumerate(zip(sequences, targets)):
        for start, lo, hi in windows(len(ids), ctx):
            local = [(j, p - start) for j, p in enumerate(tg) if lo <= p < hi]
            if local:
                items.append((s, ids[start:start + ctx], local))
    preds = [[None] * len(tg) for tg in targets]
    for b in range(0, len(items), batch_size):
        chunk = items[b:b + batch_size]
        width = max(len(w) for _, w, _ in chunk)
        idx = torch.tensor([w + [pad_id] * (width - len(w)) for _, w, _ in chunk], device=device)  # (B, T)
        with torch.no_grad():
            top = model(idx, heads=[0])[0].argmax(-1).tolist()  # (B, T); right padding leaves earlier logits intact
        for row, (s, _, local) in zip(top, chunk):
            for j, q in local:
                preds[s][j] = row[q - 1]
    return preds


def correct_by_story(predictions, sequences, targets):
    """Per story, one 0/1 per scored position: int(predictions[s][j] == sequences[s][targets[s][j]])."""
    return [[int(pred == ids[p]) for pred, p in zip(preds, tg)]
            for preds, ids, tg in zip(predictions, sequences, targets)]


def score(predictions, sequences, targets):
    """Accuracy over all scored positions (of every story together)."""
    items = [c for story_items in correct_by_story(predictions, sequences, targets) for c in story_items]
    return sum(items) / len(items) if items else 0.0


def encode_tests(tokenizer, tests):
    """-> (sequences, targets): <eod> + tokens of each story (as after a document boundary in
    training) and the token indices in them to score."""
    sequences, targets = [], []
    for text, offsets in tests:
        sequences.append([tokenizer.eod_id] + tokenizer.encode(text))
        targets.append([k + 1 for k in token_targets(tokenizer, text, offsets)])
    return sequences, targets


def evaluate_model(cfg, model_entry, run, dev):
    """Score one trained model on device `dev` (the stage `mtp eval induction` writes the result, eval_induction.json;
    run: its MLflow child run, which gets the parameters).

    The context is the model's training seq_len: longer stories are scored in strided windows.
    Besides the accuracy, the file holds correct_by_story: per test story (the i-th of test_set(num_tests,
    seed)) one 0/1 per scored position, which the report's paired bootstrap resamples by story.
    """
    from pathlib import Path

    from mtp.checkpoint import load_model
    from mtp.tokenizer import Tokenizer

    syn = cfg["eval"]["synthetic"]
    model, payload = load_model(model_entry.dir, device=dev)
    tok = Tokenizer.load(Path(payload["data_dir"]) / "tokenizer.json")
    ctx = min(model_entry.train["seq_len"], model.cfg.max_seq_len)
    sequences, targets = encode_tests(tok, test_set(syn["num_tests"], cfg["seed"]))
    preds = predict(model, sequences, targets, ctx, syn["batch_size"], tok.eod_id, dev)
    items = correct_by_story(preds, sequences, targets)
    metrics = {"induction_acc": score(preds, sequences, targets),
               "induction_scored_tokens": sum(len(t) for t in targets)}
    run.params({"num_tests": syn["num_tests"], "test_seed": cfg["seed"], "context": ctx,
                "batch_size": syn["batch_size"]})
    # correct_by_story: story i is the i-th of test_set(num_tests, seed): the report pairs models by it
    return {**model_entry.run_keys(), "task": "induction", "num_tests": syn["num_tests"], "test_seed": cfg["seed"],
            "context": ctx, "metrics": metrics, "correct_by_story": items}
