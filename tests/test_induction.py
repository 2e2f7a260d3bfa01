"""Induction stories: names, generators, scoring positions, windows, teacher-forced scoring, the eval stage (mtp.stages.eval.evaluate)."""
import random
import re
import string

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from mtp import UserError
from mtp.evals import induction as IE
from mtp.tasks import induction as I
from mtp.tokenizer import Tokenizer, byte_tokenizer, train_bpe
from mtp.stages.eval import evaluate

TOK = Tokenizer(byte_tokenizer())


def test_names_are_two_byte_tokens_and_not_words():
    assert len(I.NAMES) > 300 and len(I.NAME_INITIALS) >= 3
    for name in I.NAMES:
        ids = TOK.encode(name)
        assert len(ids) == 2 and [TOK.decode([i]) for i in ids] == list(name)
        assert name[0] in string.ascii_uppercase and name[1] in string.ascii_lowercase
        assert name.lower() not in I.ENGLISH_TWO_LETTER
    vocab_words = {w for words in I.VOCAB.values() for w in words}
    assert all(w == w.lower() for w in vocab_words)
    template_capitals = {c for t in I.TEMPLATES for c in I._SLOT.sub("", t) if c.isupper()}
    assert template_capitals and not template_capitals & set(I.NAME_INITIALS)


def test_training_documents_deterministic():
    a = I.training_documents(seed=1, num_documents=40)
    assert a == I.training_documents(seed=1, num_documents=40)
    assert a[:5] == I.training_documents(seed=1, num_documents=5)
    assert a != I.training_documents(seed=2, num_documents=40)
    assert len(set(a)) == 40 and all(t.isascii() for t in a)


def test_stories_mark_every_name_and_only_names():
    for i in range(200):
        text, spans = I.story(random.Random(i))
        names = {name for _, name in spans}
        assert 2 <= len(names) <= 3 and len({n[0] for n in names}) == len(names)
        starts = [m.start() for m in re.finditer(f"[{''.join(I.NAME_INITIALS)}]", text)]
        assert starts == [at for at, _ in spans]  # a name initial occurs exactly where a name does
        for at, name in spans:
            assert text[at:at + 2] == name and not text[at + 2:at + 3].isalpha()
        assert len(I.repeat_offsets(spans)) == len(spans) - len(names) > 0


def test_test_set_positions_point_at_second_token_of_repeated_names():
    tests = I.test_set(30, seed=0)
    assert tests == I.test_set(30, seed=0) and tests[:7] == I.test_set(7, seed=0)
    assert tests != I.test_set(30, seed=1)
    assert not {t for t, _ in tests} & set(I.training_documents(seed=0, num_documents=200))
    for text, offsets in tests:
        ids = TOK.encode(text)
        for o, k in zip(offsets, IE.token_targets(TOK, text, offsets)):
            first, second = TOK.decode([ids[k - 1]]), TOK.decode([ids[k]])
            assert first + second == text[o - 1:o + 1]
            assert first in I.NAME_INITIALS and second in string.ascii_lowercase
            assert text.find(first + second) < o - 1  # the name appeared before


def test_token_targets_refuses_a_tokenizer_that_merges_names():
    bpe = Tokenizer(train_bpe(iter(["Zq and Zq met Zq. " * 50] * 20), 300))
    assert len(bpe.encode("Zq")) == 1
    text = "Once there lived a shy duck named Zq. Zq smiled."
    with pytest.raises(UserError, match="tokenizer"):
        IE.token_targets(bpe, text, [text.rindex("Zq") + 1])


@given(st.integers(1, 300), st.integers(2, 64))
def test_windows_cover_each_position_once_with_context(length, ctx):
    seen = []
    for i, (start, lo, hi) in enumerate(IE.windows(length, ctx)):
        assert 0 <= start < lo or (i == 0 and start == lo == 0)
        assert hi - start <= ctx and hi <= length
        if i:
            assert lo - start >= ctx - ctx // 2
        seen += range(lo, hi)
    assert seen == list(range(length))


# ---- teacher-forced scoring with stand-in models ---------------------------------------------------

class NextTokenOracle:
    """Returns logits whose argmax at t is the token at t+1 of its input (a perfect copier)."""

    def __call__(self, idx, heads):
        assert heads == [0]
        return [F.one_hot(idx.roll(-1, dims=1), 257).float()]


class Constant:
    def __init__(self, token):
        self.token = token

    def __call__(self, idx, heads):
        return [F.one_hot(torch.full_like(idx, self.token), 257).float()]


def test_predict_and_score_with_stand_in_models():
    sequences, targets = IE.encode_tests(TOK, I.test_set(12, seed=5))
    assert all(seq[0] == TOK.eod_id for seq in sequences)
    assert max(map(len, sequences)) > 100  # ctx=48 below forces several windows per story
    preds = IE.predict(NextTokenOracle(), sequences, targets, ctx=48, batch_size=5, pad_id=TOK.eod_id)
    assert IE.score(preds, sequences, targets) == 1.0
    a = TOK.encode("a")[0]
    preds = IE.predict(Constant(a), sequences, targets, ctx=48, batch_size=5, pad_id=TOK.eod_id)
    truth = [seq[p] for seq, tg in zip(sequences, targets) for p in tg]
    assert IE.score(preds, sequences, targets) == pytest.approx(truth.count(a) / len(truth))


def test_score_on_hand_made_predictions():
    sequences = [[9, 1, 2, 3, 4], [9, 5, 6]]
    targets = [[2, 4], [2]]
    assert IE.score([[2, 4], [6]], sequences, targets) == 1.0
    assert IE.score([[2, 0], [0]], sequences, targets) == pytest.approx(1 / 3)
    assert IE.score([[], []], [[1], [1]], [[], []]) == 0.0
    assert IE.correct_by_story([[2, 0], [0]], sequences, targets) == [[1, 0], [0]]


# ---- end to end ------------------------------------------------------------------------------------

def _stories_study(tmp_path, num_tests):
    """A one-model induction study in tmp_path (debug size, n=2, seq_len 64) -> (cfg, its model entry)."""
    from mtp import config
    TOK.save(tmp_path / "tokenizer.json")
    cfg = config.validate({
        "results": str(tmp_path / "results"),
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "test"},
        "datasets": {"stories": {"source": {"kind": "induction"}}},
        "sweeps": [{"dataset": "stories", "sizes": ["debug"], "n_heads": [2]}],
        "train": {"seq_len": 64},
        "eval": {"synthetic": {"num_tests": num_tests, "batch_size": 4}},
    })
    return cfg, config.models(cfg)[0]


def test_evaluate_model_end_to_end(tmp_path):
    from mtp import tracking
    from mtp.checkpoint import save_model
    from mtp.io import read_json
    from mtp.nn.model import ModelConfig, MTPModel
    cfg, entry = _stories_study(tmp_path, 3)
    torch.manual_seed(0)
    model = MTPModel(ModelConfig.from_preset("debug", vocab_size=257, n_heads=2))
    save_model(entry.dir, model, extra={"dataset": "stories", "size": "debug", "n": 2, "data_dir": str(tmp_path)})
    result = evaluate(cfg, entry, "induction")
    saved = read_json(f"{entry.dir}/eval_induction.json")
    assert saved == result and saved["context"] == 64 and saved["size"] == "debug"
    _, targets = IE.encode_tests(TOK, I.test_set(3, cfg["seed"]))
    assert saved["metrics"]["induction_scored_tokens"] == sum(map(len, targets))
    assert 0.0 <= saved["metrics"]["induction_acc"] <= 1.0
    stories = saved["correct_by_story"]  # per test story, for the report's paired bootstrap
    assert [len(s) for s in stories] == [len(t) for t in targets]
    assert sum(map(sum, stories)) / sum(map(len, stories)) == pytest.approx(saved["metrics"]["induction_acc"])
    assert tracking.find_run(cfg, "eval_induction", dataset="stories", size="debug", n=2, seed=0) is not None


@pytest.mark.parametrize("stand_in", ["copier", "constant"])
def test_evaluate_model_scores_a_model_of_known_accuracy(tmp_path, monkeypatch, stand_in):
    """evaluate_model with the loaded model replaced by one of known accuracy, through the same test set,
    windows, scoring, file and MLflow run: a perfect copier (its logits at t point at the token at t+1)
    scores 1 on every scored position; a model that always predicts <eod> (never a name token) scores 0."""
    import mtp.checkpoint
    from mtp.checkpoint import save_model
    from mtp.io import read_json
    from mtp.nn.model import ModelConfig, MTPModel
    cfg, entry = _stories_study(tmp_path, 4)
    save_model(entry.dir, MTPModel(ModelConfig.from_preset("debug", vocab_size=257, n_heads=2)),
               extra={"dataset": "stories", "size": "debug", "n": 2, "data_dir": str(tmp_path)})
    model = NextTokenOracle() if stand_in == "copier" else Constant(TOK.eod_id)
    real_load = mtp.checkpoint.load_model

    def load_model(folder, device="cpu"):
        loaded, payload = real_load(folder, device=device)
        model.cfg = loaded.cfg  # evaluate_model reads the context length from it
        return model, payload
    monkeypatch.setattr(mtp.checkpoint, "load_model", load_model)
    result = evaluate(cfg, entry, "induction")
    assert read_json(f"{entry.dir}/eval_induction.json") == result
    sequences, targets = IE.encode_tests(TOK, I.test_set(4, cfg["seed"]))
    assert max(map(len, sequences)) > 64  # stories longer than the context: scored in several windows
    expect = 1 if stand_in == "copier" else 0
    assert result["metrics"]["induction_acc"] == expect
    assert result["correct_by_story"] == [[expect] * len(t) for t in targets]
