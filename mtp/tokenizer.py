"""Tokenizers, both stored as a Hugging Face `tokenizers` tokenizer.json.

- byte: the 256 byte values (GPT-2's byte-to-unicode alphabet, no merges) + <|eod|>.
- bpe:  byte-level BPE trained on the train split with `tokenizers`, + <|eod|>.
- hf:   a Hugging Face model directory's own tokenizer.json (for heads added to that model: init_from hf:<dir>);
        its end-of-sequence token ends each document.
decode(encode(text)) == text for any text in byte and bpe. A dataset's end-of-document id is recorded in its
meta.json beside tokenizer.json, and Tokenizer.load reads it from there.
"""
import json
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from mtp import UserError
from mtp.io import read_json

EOD = "<|eod|>"


def byte_tokenizer():
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_to_char = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    # id = byte value: order GPT-2's alphabet by the byte each character stands for
    chars = sorted(alphabet, key=lambda c: _byte_of(c))
    tok = HFTokenizer(models.BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[]))
    tok.pre_tokenizer = byte_to_char
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOD])
    return tok


def _byte_of(char):
    # GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to 256 + k
    table = {}
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    k = 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + k)] = b
            k += 1
    return table[char]


def train_bpe(texts, vocab_size):
    """Byte-level BPE on an iterator of documents (the train split only)."""
    if vocab_size < 257 + 1:
        raise UserError(f"tokenizer.vocab_size {vocab_size} is too small for byte-level BPE; use at least 300")
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOD], show_progress=True,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


EOS_FILES = ("tokenizer_config.json", "config.json")  # where a Hugging Face directory names its eos


def source_files(model_dir):
    """The files tokenizer kind hf reads from `model_dir` (the tokenize rule's inputs)."""
    model_dir = Path(model_dir)
    return [str(model_dir / "tokenizer.json")] + [str(model_dir / f) for f in EOS_FILES if (model_dir / f).exists()]


def from_model_dir(model_dir):
    """Tokenizer kind hf: <model_dir>/tokenizer.json, its eos (tokenizer_config.json's eos_token, else config.json's
    eos_token_id, the first of a list) as the end of document."""
    model_dir = Path(model_dir)
    path = model_dir / "tokenizer.json"
    if not path.exists():
        raise UserError(f"{path}: not found; tokenizer kind hf reads a Hugging Face model directory's tokenizer.json "
                        f"(save it with the tokenizer's save_pretrained)")
    tok = Tokenizer.load(path)
    conf = {f: read_json(model_dir / f) for f in EOS_FILES if (model_dir / f).exists()}
    eos = conf.get("tokenizer_config.json", {}).get("eos_token")
    eos_id = tok.hf.token_to_id(eos.get("content") if isinstance(eos, dict) else eos) if eos else None
    if eos_id is None:
        ids = conf.get("config.json", {}).get("eos_token_id")
        eos_id = ids[0] if isinstance(ids, list) and ids else ids
    if not isinstance(eos_id, int):
        raise UserError(f"{model_dir}: no end-of-sequence token (tokenizer_config.json eos_token or config.json "
                        f"eos_token_id); mtp ends every document with it: add one")
    return Tokenizer(tok.hf, eod_id=eos_id)


class Tokenizer:
    """What the stages use: encode/decode and the end-of-document id."""

    def __init__(self, hf, eod_id=None):
        self.hf = hf
        # given (a Hugging Face model's eos, a dataset's meta.json), else ours <|eod|>, else an imported model's own
        # end of sequence (Llama's sentencepiece </s>)
        self.eod_id = eod_id if eod_id is not None else next(
            (i for t in (EOD, "</s>") if (i := hf.token_to_id(t)) is not None), None)
        self.vocab_size = hf.get_vocab_size()

    @classmethod
    def load(cls, path):
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: tokenizer not found (run `mtp tokenize` for this dataset first)")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exception
            raise UserError(f"{path}: corrupt tokenizer file ({str(e)[:120]}); delete the dataset folder and rerun tokenize") from None
        return cls(hf, eod_id=_recorded_eod(path))

    def encode(self, text):
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts):
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids):
        return self.hf.decode(list(ids), skip_special_tokens=True)

    def save(self, path):
        self.hf.save(str(path))


def _recorded_eod(path):
    """The end-of-document id that the tokenize stage recorded in meta.json beside `path`, or None."""
    meta = Path(path).with_name("meta.json")
    try:
        eod = json.loads(meta.read_text()).get("eod_id") if meta.exists() else None
    except (OSError, ValueError, AttributeError):
        return None
    return eod if isinstance(eod, int) else None
