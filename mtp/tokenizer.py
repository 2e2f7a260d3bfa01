"""Tokenizers, both stored as a Hugging Face `tokenizers` tokenizer.json.

- byte: the 256 byte values (GPT-2's byte-to-unicode alphabet, no merges) + <|eod|>.
- bpe:  byte-level BPE trained on the train split with `tokenizers`, + <|eod|>.
decode(encode(text)) == text for any text in both.
"""
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from mtp import UserError

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


class Tokenizer:
    """What the stages use: encode/decode and the end-of-document id."""

    def __init__(self, hf):
        self.hf = hf
        # ours <|eod|>; an imported model's own end of sequence (Llama's sentencepiece </s>)
        self.eod_id = next((i for t in (EOD, "</s>") if (i := hf.token_to_id(t)) is not None), None)
        self.vocab_size = hf.get_vocab_size()

    @classmethod
    def load(cls, path):
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: tokenizer not found (run `mtp tokenize` for this dataset first)")
        try:
            return cls(HFTokenizer.from_file(str(path)))
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exception
            raise UserError(f"{path}: corrupt tokenizer file ({str(e)[:120]}); delete the dataset folder and rerun tokenize") from None

    def encode(self, text):
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts):
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids):
        return self.hf.decode(list(ids), skip_special_tokens=True)

    def save(self, path):
        self.hf.save(str(path))
