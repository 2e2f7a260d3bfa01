"""Meta's released multi-token checkpoints (facebook/multi-token-prediction) as an mtp
model directory (model.pt + data/tokenizer.json; the stage `mtp import meta <dir>`: mtp/stages/import_checkpoint.py) that native decoding, `mtp export` and vLLM take.

The layout read (Llama-2 reference names; what the release's model code builds, as far as it could be checked
here: the release itself is not readable offline, so this follows re-implementations of its model.py that
agree with each other):
  params.json        dim, n_layers (EVERY block: layers + extra_heads), n_heads, vocab_size (-1: from the
                     embedding), multiple_of, ffn_dim_multiplier, norm_eps, rope_theta (default 10000),
                     n_future_tokens (default 1), n_kv_heads (default n_heads; fewer: grouped-query attention),
                     max_seq_len (default 4096)
  consolidated*.pth  one shard (the release: consolidated.pth; Llama-2 style: consolidated.00.pth):
                     tok_embeddings, layers.{i}.attention.wq/wk/wv/wo, layers.{i}.feed_forward.w1/w2/w3,
                     layers.{i}.attention_norm, layers.{i}.ffn_norm, extra_heads.{j}.(same block names), norm, output
  tokenizer.model    sentencepiece, in the directory or its parent (the release keeps it at the repository root,
                     above 7B_1T_4/); converted with transformers' Llama converter; </s> is the end of document
With L = n_layers and n = n_future_tokens, the reference model builds `layers` of L-n+1 blocks
(`for layer_id in range(params.n_layers - self.n_future_tokens + 1)`) and `extra_heads` of n-1 (7B_1T_4: L=32,
29 + 3). Its forward: the trunk is layers[:-1] (L-n blocks), head 1 is layers[-1], heads 2..n are extra_heads,
all heads read the trunk's output, then one shared norm and output. That is our model with n_layers = L.

Rotary convention: the reference code rotates interleaved pairs (x0, x1), (x2, x3), ... as complex numbers;
ours (and HF's) rotate the two halves (x_i, x_{i+hd/2}). The rows of wq and wk are permuted within each
attention head (pair j -> rows j and j + hd/2), which gives the same attention scores.
"""
import json
from pathlib import Path

from mtp import UserError

BLOCK = {"attention.wq.weight": "attn.wq.weight", "attention.wk.weight": "attn.wk.weight",
         "attention.wv.weight": "attn.wv.weight", "attention.wo.weight": "attn.wo.weight",
         "feed_forward.w1.weight": "mlp.w1.weight", "feed_forward.w2.weight": "mlp.w2.weight",
         "feed_forward.w3.weight": "mlp.w3.weight", "attention_norm.weight": "attn_norm.weight",
         "ffn_norm.weight": "mlp_norm.weight"}
TOP = {"tok_embeddings.weight": "tok_emb.weight", "norm.weight": "norm.weight", "output.weight": "lm_head.weight"}


def read_params(src):
    path = src / "params.json"
    if not path.exists():
        raise UserError(f"{path}: not found; `mtp import meta` reads a directory holding params.json and "
                        f"consolidated.pth, e.g. 7B_1T_4/ of Meta's multi-token release")
    params = json.loads(path.read_text())
    for key in ("dim", "n_layers", "n_heads"):
        if key not in params:
            raise UserError(f"{path}: key '{key}' is missing")
    n = params.get("n_future_tokens", 1)
    if params["n_layers"] <= n:
        raise UserError(f"{path}: n_layers {params['n_layers']} must exceed n_future_tokens {n} (n_layers counts "
                        f"every block; the trunk is n_layers - n_future_tokens blocks and mtp's model needs one)")
    return params


def find_tokenizer(src):
    """tokenizer.model in src, else in its parent (the release: repository root, above 7B_1T_4/)."""
    for path in (src / "tokenizer.model", src.parent / "tokenizer.model"):
        if path.exists():
            return path
    raise UserError(f"tokenizer.model: not found in {src} nor {src.parent} (the release's sentencepiece tokenizer, "
                    f"at its repository root); copy it into either")


def read_weights(src):
    import torch
    shards = sorted(src.glob("consolidated*.pth"))
    if not shards:
        raise UserError(f"{src}: no consolidated*.pth weights file (the release: 7B_1T_4/consolidated.pth)")
    if len(shards) > 1:
        raise UserError(f"{src}: {len(shards)} consolidated*.pth files (model-parallel shards?); keep one, or merge "
                        f"the shards into one consolidated.pth first")
    return torch.load(shards[0], map_location="cpu", weights_only=True)


def permute_rotary(w, n_heads):
    """Rows of wq (n_heads query heads) or wk (n_kv_heads heads) from interleaved-pair rotary (Meta) to
    rotate-half (ours, HF)."""
    out_dim, dim = w.shape
    hd = out_dim // n_heads
    return w.view(n_heads, hd // 2, 2, dim).transpose(1, 2).reshape(out_dim, dim)


def convert(params, weights):
    """-> (ModelConfig, our state dict)."""
    from mtp.nn.model import ModelConfig
    L, n, nh = params["n_layers"], params.get("n_future_tokens", 1), params["n_heads"]
    nkv = params.get("n_kv_heads") or nh

    def take(key):
        if key not in weights:
            raise UserError(f"consolidated weights: key '{key}' is missing (expected Meta's Llama-2 layout)")
        return weights[key]

    blocks = [f"layers.{i}" for i in range(L - n + 1)] + [f"extra_heads.{j}" for j in range(n - 1)]
    ours = [f"trunk.{i}" for i in range(L - n)] + [f"heads.{j}" for j in range(n)]
    state = {TOP[k]: take(k) for k in TOP}
    rotary = {"attention.wq.weight": nh, "attention.wk.weight": nkv}  # heads each projection's rows hold
    for src, dst in zip(blocks, ours):
        for k, v in BLOCK.items():
            w = take(f"{src}.{k}")
            state[f"{dst}.{v}"] = permute_rotary(w, rotary[k]) if k in rotary else w
    extra = sorted({".".join(k.split(".")[:2]) for k in weights if k.startswith(("layers.", "extra_heads."))}
                   - set(blocks))
    if extra:
        raise UserError(f"consolidated weights: unexpected block '{extra[0]}' for params.json n_layers {L}, "
                        f"n_future_tokens {n} (layers = n_layers - n_future_tokens + 1 blocks); fix params.json")
    vocab = params.get("vocab_size", -1)
    cfg = ModelConfig(vocab_size=vocab if vocab > 0 else state["tok_emb.weight"].shape[0], dim=params["dim"],
                      n_layers=L, n_attn_heads=nh, n_kv_heads=nkv, n_heads=n,
                      max_seq_len=params.get("max_seq_len", 4096), norm_eps=params.get("norm_eps", 1e-5),
                      rope_theta=params.get("rope_theta", 10000.0), ffn_dim=state["heads.0.mlp.w1.weight"].shape[0])
    return cfg, state


def convert_tokenizer(path, out):
    """tokenizer.model at `path` (sentencepiece) -> out/tokenizer.json (HF tokenizers), through transformers'
    converter."""
    from transformers import LlamaTokenizerFast  # transformers 5: the tokenizers-backed Llama tokenizer
    fast = LlamaTokenizerFast.from_pretrained(str(path.parent))  # converts it (needs sentencepiece, protobuf)
    out.mkdir(parents=True, exist_ok=True)
    fast.backend_tokenizer.save(str(out / "tokenizer.json"))


def import_meta(src, out):
    """Write the mtp model directory `out` from Meta's checkpoint directory `src`; -> the ModelConfig."""
    import torch

    from mtp.checkpoint import save_model
    from mtp.nn.model import MTPModel
    src, out = Path(src), Path(out)
    params, tokenizer = read_params(src), find_tokenizer(src)  # both before the (large) weights load
    cfg, state = convert(params, read_weights(src))
    with torch.device("meta"):
        model = MTPModel(cfg)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    convert_tokenizer(tokenizer, out / "data")
    save_model(out, model, extra={"dataset": "imported", "size": "imported", "n": cfg.n_heads,
                                  "data_dir": str((out / "data").resolve()), "source": str(src.resolve())})
    return cfg

