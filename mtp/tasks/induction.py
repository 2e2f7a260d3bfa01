"""Induction (Gloeckle et al. 2024, Section 4.1): short stories with random 2-token names (the task
and its data; scoring a model on it: mtp/evals/induction.py).

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

Test set. test_set returns each test story with the character offsets of the second character
of every name occurrence after that name's first: the positions mtp/evals/induction.py scores.

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
