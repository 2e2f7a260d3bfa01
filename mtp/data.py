"""The tokenize stage: corpus -> train.bin, val.bin, tokenizer.json, meta.json; and the batch sampler.

Every source is read through Hugging Face `datasets`. Documents go to val when a stable
hash of their text falls below val_fraction, so the split never depends on order or run.
"""
import glob
import hashlib
import os
import sys
import sysconfig
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mtp import UserError
from mtp.tasks import TASKS
from mtp.io import atomic_path, digest, read_json, remove_stale_temps, sha256_file, write_json
from mtp.tokenizer import Tokenizer, byte_tokenizer, from_model_dir, train_bpe


def stdlib_files(max_files=None):
    """The running interpreter's standard-library .py files, in a deterministic order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py")
                   if "site-packages" not in p.parts and "dist-packages" not in p.parts)
    return [str(p) for p in files[:max_files]]


def _expand(patterns, field):
    files = []
    for pat in patterns:
        found = sorted(glob.glob(os.path.expanduser(pat), recursive=True))
        if not found:
            raise UserError(f"{field}: '{pat}' matches no file; check the path")
        files += [f for f in found if os.path.isfile(f)]
    return files


def load_documents(source, seed=0):
    """Return (texts, description) for a dataset's `source` block."""
    import datasets
    datasets.disable_progress_bars()
    kind = source["kind"]
    if kind in ("stdlib", "files"):
        files = stdlib_files(source.get("max_files")) if kind == "stdlib" else _expand(source["paths"], "source.paths")
        if not files:
            raise UserError("source: no files found for the corpus")
        ds = datasets.load_dataset("text", data_files=files, sample_by="document", split="train",
                                   cache_dir=_cache_dir())
        texts = ds["text"]
        listing = "\n".join(f"{sha256_file(f)}  {f}" for f in files)
        return texts, {"kind": kind, "files": len(files), "sources_sha256": hashlib.sha256(listing.encode()).hexdigest(),
                       "first": files[0], "last": files[-1]}
    if kind == "json":
        files = _expand(source["paths"], "source.paths")
        fmt = "parquet" if all(f.endswith(".parquet") for f in files) else "json"
        ds = datasets.load_dataset(fmt, data_files=files, split="train", cache_dir=_cache_dir())
        if source["text_field"] not in ds.column_names:
            raise UserError(f"source.text_field: '{source['text_field']}' is not a field of {files[0]}; "
                            f"fields: {', '.join(ds.column_names)}")
        return ds[source["text_field"]], {"kind": kind, "files": files}
    if kind == "hub":
        try:
            ds = datasets.load_dataset(source["name"], source.get("config"), split=source.get("split", "train"))
        except Exception as e:  # noqa: BLE001 - datasets raises many kinds when offline or misnamed
            raise UserError(f"source.name: could not load hub dataset '{source['name']}' "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:160]}); offline machines need a local "
                            f"source (kind: files or json)") from None
        if source["text_field"] not in ds.column_names:
            raise UserError(f"source.text_field: '{source['text_field']}' is not a field of {source['name']}; "
                            f"fields: {', '.join(ds.column_names)}")
        if source.get("max_documents"):
            ds = ds.select(range(min(len(ds), source["max_documents"])))
        return ds[source["text_field"]], {"kind": kind, "name": source["name"]}
    if kind in TASKS:
        opts = {k: v for k, v in source.items() if k != "kind"}
        texts = TASKS[kind].make_documents(seed, opts)
        return datasets.Dataset.from_dict({"text": texts})["text"], {"kind": kind, **opts}
    raise UserError(f"source.kind: unknown kind '{kind}'; known: stdlib, files, json, hub, {', '.join(TASKS)}")


def _cache_dir():
    return os.environ.get("MTP_DATASETS_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "mtp", "datasets"))


def in_val(text, fraction):
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    return h / 2 ** 64 < fraction


def split(texts, fraction):
    train, val = [], []
    for t in texts:
        (val if in_val(t, fraction) else train).append(t)
    return train, val


def _encode_split(tok, texts, out_path, desc):
    dtype = np.uint16 if tok.vocab_size <= 2 ** 16 else np.uint32
    chunks, n_tokens, batch = [], 0, 256
    with tqdm(total=len(texts), desc=desc, unit="doc", disable=None) as bar:
        for i in range(0, len(texts), batch):
            for ids in tok.encode_batch(texts[i:i + batch]):
                arr = np.asarray(ids + [tok.eod_id], dtype=dtype)
                chunks.append(arr)
                n_tokens += len(arr)
            bar.update(min(batch, len(texts) - i))
    data = np.concatenate(chunks) if chunks else np.zeros(0, dtype)
    with atomic_path(out_path) as tmp:
        data.tofile(tmp)
    return n_tokens, dtype


def make_tokenizer(tk, train, results=None):
    """The dataset's `tokenizer`: bytes, BPE trained on the train split, or a Hugging Face model's own (kind hf; kind
    gguf: a GGUF file's, through its HF directory cached under `results`, mtp/formats/gguf.py)."""
    if tk["kind"] in ("hf", "gguf"):
        from mtp.formats import gguf as gguf_llama
        return from_model_dir(gguf_llama.hf_dir(tk["path"], results) if tk["kind"] == "gguf" else tk["path"])
    return Tokenizer(byte_tokenizer() if tk["kind"] == "byte" else train_bpe(iter(train), tk["vocab_size"]))


def tokenize(cfg, name):
    """Run the tokenize stage for dataset `name`; returns meta (also written to meta.json)."""
    from mtp.config import data_dir
    from mtp import tracking
    ds_cfg = cfg["datasets"].get(name)
    if ds_cfg is None:
        raise UserError(f"dataset '{name}' is not in the config's datasets ({', '.join(cfg['datasets'])})")
    out = data_dir(cfg, name)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # left by a killed run; this job owns the folder
    with tracking.child_run(cfg, "tokenize", dataset=name) as run:
        texts, described = load_documents(ds_cfg["source"], seed=cfg["seed"])
        texts = [t for t in texts if t]
        if not texts:
            raise UserError(f"datasets.{name}.source: the corpus is empty (no non-empty documents)")
        train, val = split(texts, ds_cfg["val_fraction"])
        if not train or not val:
            raise UserError(f"datasets.{name}.val_fraction: {ds_cfg['val_fraction']} leaves the "
                            f"{'train' if not train else 'val'} split empty for {len(texts)} documents; "
                            f"add documents or change val_fraction")
        tk = ds_cfg["tokenizer"]
        tok = make_tokenizer(tk, train, cfg["results"])
        with atomic_path(out / "tokenizer.json") as tmp:
            tok.save(tmp)
        n_train, dtype = _encode_split(tok, train, out / "train.bin", f"tokenize {name} train")
        n_val, _ = _encode_split(tok, val, out / "val.bin", f"tokenize {name} val")
        meta = {
            "dataset": name, "tokenizer": tk["kind"], "vocab_size": tok.vocab_size, "eod_id": tok.eod_id,
            "dtype": np.dtype(dtype).name, "source": described, "val_fraction": ds_cfg["val_fraction"],
            "documents_train": len(train), "documents_val": len(val),
            "tokens_train": n_train, "tokens_val": n_val,
            "bytes_train": sum(len(t.encode("utf-8", "surrogatepass")) for t in train),
            "bytes_val": sum(len(t.encode("utf-8", "surrogatepass")) for t in val),
            "sha256": {f: sha256_file(out / f) for f in ("train.bin", "val.bin", "tokenizer.json")},
            "config_digest": digest(ds_cfg),
        }
        write_json(out / "meta.json", meta)
        run.params({"dataset": name, **{f"source.{k}": v for k, v in described.items()}, "tokenizer": tk,
                    "val_fraction": ds_cfg["val_fraction"]})
        run.dataset(name, f"mtp://{name}/{described['kind']}", meta["sha256"]["train.bin"])
        run.log({k: meta[k] for k in ("vocab_size", "documents_train", "documents_val", "tokens_train",
                                      "tokens_val", "bytes_train", "bytes_val")})
        run.artifact(out / "tokenizer.json")
        run.artifact(out / "meta.json")
    return meta


class TokenData:
    """A tokenized split, memory-mapped, with checks against meta.json."""

    def __init__(self, folder, split_name, verify=False):
        folder = Path(folder)
        self.meta = read_json(folder / "meta.json")
        need = ("vocab_size", "dtype", f"tokens_{split_name}", f"bytes_{split_name}") + (("sha256",) if verify else ())
        if (not isinstance(self.meta, dict) or any(k not in self.meta for k in need)
                or self.meta["dtype"] not in ("uint16", "uint32") or not isinstance(self.meta.get("sha256", {}), dict)):
            raise UserError(f"{folder / 'meta.json'}: not the meta.json of a tokenized dataset (needs {', '.join(need)}); "
                            f"delete {folder} and rerun tokenize")
        path = folder / f"{split_name}.bin"
        if not path.exists():
            raise UserError(f"{path}: tokenized data not found (run `mtp tokenize` first)")
        if verify and sha256_file(path) != self.meta["sha256"].get(f"{split_name}.bin"):
            raise UserError(f"{path}: contents do not match the sha256 in meta.json (corrupt or half-written); "
                            f"delete {folder} and rerun tokenize")
        self.tokens = np.memmap(path, dtype=self.meta["dtype"], mode="r")
        if len(self.tokens) != self.meta[f"tokens_{split_name}"]:
            raise UserError(f"{path}: holds {len(self.tokens)} tokens, meta.json says {self.meta[f'tokens_{split_name}']}; "
                            f"delete {folder} and rerun tokenize")
        self.vocab_size = self.meta["vocab_size"]
        self.bytes_per_token = self.meta[f"bytes_{split_name}"] / max(1, self.meta[f"tokens_{split_name}"])

    def check_vocab(self, vocab_size):
        top = int(self.tokens.max()) if len(self.tokens) else 0
        if top >= vocab_size:
            raise UserError(f"token id {top} in the data is >= the model's vocab size {vocab_size}")

    def windows(self, starts, length):
        """Stack windows tokens[s : s+length] -> int64 array (len(starts), length)."""
        return np.stack([np.asarray(self.tokens[s:s + length], dtype=np.int64) for s in starts])
