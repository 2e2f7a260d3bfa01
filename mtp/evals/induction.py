"""Induction (Gloeckle et al. 2024, Section 4.1): short stories with random 2-token names.

Stories. Template children's stories, generated locally and seeded: 2 or 3 characters, an
introduction per character, 2-5 middle sentences about random pairs of them, one ending.
Plain text, one story per document, e.g.

    Once upon a time, there was a shy frog named Zq. One day, Zq met a kind owl called Bu.
    Bu gave Zq a red kite. "Thank you, Bu," said Zq. Zq and Bu were best friends forever.

Names. A name is one uppercase letter + one lowercase letter ("Zq"): two bytes, so exactly
two tokens of the byte tokenizer. The uppercase letter is never one that starts a word of the
templates (NAME_INITIALS excludes O, T, A, ...), so after such a capital only a name can
follow, and names that spell an English two-letter word ("Go", "My") are left out. Within a
story the characters' initials differ, so a model that copies earlier context can get every
scored token right.

Metric. At every occurrence of a name after its first, predict the name's SECOND token from
the context up to and including its first token (teacher forced: one forward pass, argmax
of head 1 at the position of the first token). test_set returns character offsets of those
second characters; token_targets maps them to token indices and checks the 2-token split.

Train/test separation. Training documents and test stories draw from differently named
random streams ("induction-train:<seed>:<i>" vs "induction-test:<seed>:<i>").
"""
import random
import re
import string

VOCAB = {
    "adj": ["little", "happy", "small", "kind", "brave", "shy", "funny", "curious", "gentle", "silly", "tiny", "clever"],
    "animal": ["cat", "dog", "bird", "bunny", "fox", "bear", "duck", "frog", "mouse", "owl", "pig", "lion",
               "fish", "turtle", "puppy", "kitten", "sheep", "goat"],
    "place": ["park", "forest", "garden", "river", "beach", "hill", "farm", "pond", "meadow", "lake", "town", "woods"],
    "home": ["house", "tree", "nest", "hole", "cottage", "barn", "cave"],
    "thing": ["ball", "kite", "box", "hat", "apple", "book", "toy", "shell", "stick", "flower", "cake", "rock",
              "leaf", "cup", "drum", "boat", "balloon", "cookie"],
    "color": ["red", "blue", "green", "yellow", "pink", "purple", "orange", "white", "brown", "big", "shiny", "soft"],
    "feeling": ["happy", "sad", "excited", "tired", "scared", "proud", "hungry", "sleepy", "surprised", "glad"],
    "verb": ["play", "run", "jump", "dance", "sing", "swim", "read", "draw", "hide", "climb", "bake", "paint"],
    "spot": ["tree", "bush", "rock", "bench", "bridge", "fence", "log"],
}

# {X} is the sentence's main character, {Y} a second one; other slots are VOCAB words
FIRST_INTROS = [
    "Once upon a time, there was a {adj} {animal} named {X}.",
    "There once was a {adj} {animal} called {X}.",
    "Once there lived a {adj} {animal} named {X}.",
]
FIRST_DETAILS = [
    "{X} lived in a small {home} near the {place}.",
    "{X} liked to {verb} every day.",
    "{X} had a {color} {thing}.",
    "Every morning, {X} went to the {place}.",
]
OTHER_INTROS = [  # X is new, Y was introduced before
    "{Y} had a friend, a {adj} {animal} named {X}.",
    "One day, {Y} met a {adj} {animal} called {X}.",
    "{X} was a {adj} {animal} who lived near {Y}.",
]
MIDDLES = [
    "One day, {X} went to the {place} with {Y}.",
    "{X} found a {color} {thing} under a {spot}.",
    "\"{Y}, look at my {thing}!\" said {X}.",
    "{Y} smiled at {X} and said, \"Let us {verb} together.\"",
    "{X} and {Y} ran to the {place}.",
    "{X} was very {feeling}.",
    "{Y} gave {X} a {color} {thing}.",
    "Then {X} saw a {adj} {animal} near the {spot}.",
    "{X} wanted to {verb} with {Y}.",
    "\"Thank you, {Y},\" said {X}.",
    "{X} felt {feeling} because {Y} was kind.",
    "{X} asked {Y} to help find the lost {thing}.",
    "Soon {Y} and {X} could {verb} very well.",
]
ENDINGS = [
    "At the end of the day, {X} and {Y} went home.",
    "{X} and {Y} were best friends forever.",
    "{X} hugged {Y} and said goodnight.",
    "From that day on, {X} and {Y} played together every day.",
]
TEMPLATES = FIRST_INTROS + FIRST_DETAILS + OTHER_INTROS + MIDDLES + ENDINGS
_SLOT = re.compile(r"\{(\w+)\}")

# capitals that start a template word can never start a name
NAME_INITIALS = sorted(set(string.ascii_uppercase) - set("".join(_SLOT.sub("", t) for t in TEMPLATES)))
ENGLISH_TWO_LETTER = {"am", "an", "as", "at", "be", "by", "do", "go", "he", "hi", "if", "in", "is", "it", "me",
                      "my", "no", "of", "oh", "ok", "on", "or", "ox", "so", "to", "up", "us", "we", "ya", "yo"}
NAMES = [a + b for a in NAME_INITIALS for b in string.ascii_lowercase if (a + b).lower() not in ENGLISH_TWO_LETTER]


def _render(template, roles, rng, pieces, spans, at):
    """Append the filled template to pieces; record (offset, name) of each name in spans; return the new length."""
    pos = 0
    for m in _SLOT.finditer(template):
        literal = template[pos:m.start()]
        pieces.append(literal)
        at += len(literal)
        slot = m.group(1)
        word = roles[slot] if slot in roles else rng.choice(VOCAB[slot])
        if slot in roles:
            spans.append((at, word))
        pieces.append(word)
        at += len(word)
        pos = m.end()
    pieces.append(template[pos:])
    return at + len(template) - pos


def story(rng):
    """-> (text, [(char offset, name) for every name occurrence, in order])."""
    k = rng.randint(2, 3)
    initials = rng.sample(NAME_INITIALS, k)
    names = [rng.choice([n for n in NAMES if n[0] == c]) for c in initials]
    sentences = [(rng.choice(FIRST_INTROS), {"X": names[0]})]
    if rng.random() < 0.5:
        sentences.append((rng.choice(FIRST_DETAILS), {"X": names[0]}))
    for i in range(1, k):
        sentences.append((rng.choice(OTHER_INTROS), {"X": names[i], "Y": rng.choice(names[:i])}))
    for _ in range(rng.randint(2, 5)):
        x, y = rng.sample(names, 2)
        sentences.append((rng.choice(MIDDLES), {"X": x, "Y": y}))
    sentences.append((rng.choice(ENDINGS), {"X": names[0], "Y": names[1]}))
    pieces, spans, at = [], [], 0
    for i, (template, roles) in enumerate(sentences):
        if i:
            pieces.append(" ")
            at += 1
        at = _render(template, roles, rng, pieces, spans, at)
    return "".join(pieces), spans


def repeat_offsets(spans):
    """Char offsets of the second character of every name occurrence after that name's first."""
    seen, out = set(), []
    for at, name in spans:
        if name in seen:
            out.append(at + 1)
        seen.add(name)
    return out


def training_documents(seed, num_documents=4000):
    """num_documents stories, one per document; document i depends only on (seed, i)."""
    return [story(random.Random(f"induction-train:{seed}:{i}"))[0] for i in range(num_documents)]


def test_set(num_tests, seed):
    """num_tests (text, offsets): offsets = char offsets of the 2nd character of repeated names.

    Deterministic in seed; a smaller num_tests gives a prefix of a larger one.
    """
    out = []
    for i in range(num_tests):
        text, spans = story(random.Random(f"induction-test:{seed}:{i}"))
        out.append((text, repeat_offsets(spans)))
    return out


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


def evaluate_model(cfg, model_entry):
    """Score one trained model; write <model dir>/eval_induction.json and log it to MLflow.

    The context is the model's training seq_len: longer stories are scored in strided windows.
    Besides the accuracy, the file holds correct_by_story: per test story (the i-th of test_set(num_tests,
    seed)) one 0/1 per scored position, which the report's paired bootstrap resamples by story.
    """
    from pathlib import Path

    import torch

    from mtp import tracking
    from mtp.checkpoint import load_model
    from mtp.io import write_json
    from mtp.tokenizer import Tokenizer

    syn = cfg["eval"]["synthetic"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    keys = {k: model_entry[k] for k in ("dataset", "size", "n")}
    with tracking.child_run(cfg, "eval_induction", **keys) as run:
        model, payload = load_model(model_entry["dir"], device=device)
        tok = Tokenizer.load(Path(payload["data_dir"]) / "tokenizer.json")
        ctx = min(model_entry["train"]["seq_len"], model.cfg.max_seq_len)
        sequences, targets = encode_tests(tok, test_set(syn["num_tests"], cfg["seed"]))
        preds = predict(model, sequences, targets, ctx, syn["batch_size"], tok.eod_id, device)
        items = correct_by_story(preds, sequences, targets)
        metrics = {"induction_acc": score(preds, sequences, targets),
                   "induction_scored_tokens": sum(len(t) for t in targets)}
        # correct_by_story: story i is the i-th of test_set(num_tests, seed): the report pairs models by it
        result = {**keys, "task": "induction", "num_tests": syn["num_tests"], "seed": cfg["seed"],
                  "context": ctx, "metrics": metrics, "correct_by_story": items}
        path = Path(model_entry["dir"]) / "eval_induction.json"
        write_json(path, result)
        run.params({"num_tests": syn["num_tests"], "seed": cfg["seed"], "context": ctx,
                    "batch_size": syn["batch_size"]})
        run.log(metrics)
        run.artifact(path)
    return result
