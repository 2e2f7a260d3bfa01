import numpy as np
import pytest

from mtp import UserError, config
from mtp.data import TokenData, in_val, load_documents, split, stdlib_files, tokenize
from mtp.tokenizer import Tokenizer, byte_tokenizer, train_bpe


@pytest.fixture(scope="module")
def stdlib_texts():
    return [open(f, encoding="utf-8", errors="surrogateescape").read() for f in stdlib_files(60)]


def test_byte_tokenizer_round_trip_and_ids_are_bytes(stdlib_texts):
    tok = Tokenizer(byte_tokenizer())
    assert tok.vocab_size == 257 and tok.eod_id == 256
    text = stdlib_texts[3] + "ünïcödé ✓ \t\r\n"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    for t in stdlib_texts[:20]:
        assert tok.decode(tok.encode(t)) == t


def test_bpe_round_trip_on_stdlib_files(stdlib_texts):
    tok = Tokenizer(train_bpe(iter(stdlib_texts[:40]), 600))
    assert tok.vocab_size == 600
    for t in stdlib_texts[40:]:  # files the tokenizer was not trained on
        ids = tok.encode(t)
        assert len(ids) < len(t.encode())  # it compresses
        assert tok.decode(ids) == t


def test_split_is_deterministic_and_document_level(stdlib_texts):
    a = split(stdlib_texts, 0.2)
    b = split(list(reversed(stdlib_texts)), 0.2)
    assert set(a[0]) == set(b[0]) and set(a[1]) == set(b[1])
    assert not set(a[0]) & set(a[1])
    assert all(in_val(t, 0.2) for t in a[1])


def test_bins_equal_retokenizing(tiny_cfg):
    meta = tokenize(tiny_cfg, "code")
    folder = config.data_dir(tiny_cfg, "code")
    tok = Tokenizer.load(folder / "tokenizer.json")
    texts, _ = load_documents(tiny_cfg["datasets"]["code"]["source"])
    train, val = split([t for t in texts if t], tiny_cfg["datasets"]["code"]["val_fraction"])
    for name, docs in (("train", train), ("val", val)):
        expect = np.concatenate([np.array(tok.encode(d) + [tok.eod_id]) for d in docs])
        got = TokenData(folder, name, verify=True).tokens
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, expect)
    assert meta["documents_val"] == len(val) and meta["tokens_train"] == len(TokenData(folder, "train").tokens)


def test_corrupt_bin_is_reported(tiny_cfg):
    tokenize(tiny_cfg, "code")
    path = config.data_dir(tiny_cfg, "code") / "val.bin"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256"):
        TokenData(path.parent, "val", verify=True)


@pytest.mark.parametrize("source, match", [
    ({"kind": "files", "paths": ["/nonexistent/*.txt"]}, "matches no file"),
    ({"kind": "json", "paths": ["{json}"], "text_field": "body"}, "text_field"),
    ({"kind": "hub", "name": "surely/not-a-dataset-xyz", "text_field": "text"}, "could not load hub dataset"),
])
def test_bad_sources_name_the_field(tiny_cfg, tmp_path, source, match, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    j = tmp_path / "d.jsonl"
    j.write_text('{"text": "hello"}\n')
    source = {k: ([str(j)] if v == ["{json}"] else v) for k, v in source.items()}
    tiny_cfg["datasets"]["code"]["source"] = source
    with pytest.raises(UserError, match=match):
        tokenize(tiny_cfg, "code")
    assert not (config.data_dir(tiny_cfg, "code") / "meta.json").exists()


def test_empty_corpus_is_an_error(tiny_cfg, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    tiny_cfg["datasets"]["code"]["source"] = {"kind": "files", "paths": [str(tmp_path / "empty.txt")]}
    with pytest.raises(UserError, match="empty"):
        tokenize(tiny_cfg, "code")


def test_local_jsonl_source(tiny_cfg, tmp_path):
    docs = [f"def f{i}(x):\n    return x + {i}\n" for i in range(200)]
    (tmp_path / "c.jsonl").write_text("".join(__import__("json").dumps({"content": d}) + "\n" for d in docs))
    tiny_cfg["datasets"]["code"]["source"] = {"kind": "json", "paths": [str(tmp_path / "c.jsonl")], "text_field": "content"}
    tiny_cfg["datasets"]["code"]["tokenizer"] = {"kind": "byte"}
    meta = tokenize(tiny_cfg, "code")
    assert meta["documents_train"] + meta["documents_val"] == 200
    assert meta["bytes_train"] + meta["bytes_val"] == sum(len(d) for d in docs)
