"""A Hugging Face Llama directory read as our n=1 model: the source of `init_from: hf:<dir>` (training/init_from.py).

The directory (what `save_pretrained` writes): config.json (model_type llama), model.safetensors (or its sharded
model.safetensors.index.json, or pytorch_model.bin), tokenizer.json (the dataset's tokenizer, kind hf:
mtp/tokenizer.py). The names are mtp/formats/export.py's (our n=1 model -> HF Llama) read backwards:

    model.embed_tokens -> tok_emb       model.layers.{i}, i < L-1 -> trunk.{i}      model.layers.{L-1} -> heads.0
    model.norm -> norm                  lm_head -> lm_head (tie_word_embeddings: model.embed_tokens, one
                                        parameter in our model too)

HF and ours rotate the two halves of each attention head's q/k (rotate_half), so no rows are permuted (Meta's
reference layout, mtp/formats/meta.py, needs it). Weights load as float32.

Grouped-query attention (num_key_value_heads < num_attention_heads) is ModelConfig.n_kv_heads; tied embeddings
(tie_word_embeddings) stay tied (ModelConfig.tie_embeddings). What our model cannot represent is refused in one line
naming config.json's key: a head_dim other than hidden_size / num_attention_heads, rope scaling
(rope_scaling, or rope_parameters of a type other than default), attention or MLP biases, a hidden_act other than
silu. intermediate_size is ModelConfig.ffn_dim (any width). Top-level imports are torch-free: the train rule's
input function reads weight_files() at parse time.
"""
from pathlib import Path

from mtp import UserError
from mtp.io import read_json

INDEX = "model.safetensors.index.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def _json(path):
    if not path.exists():
        raise UserError(f"{path}: not found; init_from hf:<dir> takes a Hugging Face Llama directory "
                        f"(config.json, model.safetensors, tokenizer.json: what save_pretrained writes)")
    return read_json(path)


def weight_files(src):
    """The weights file(s) of the HF directory `src`: model.safetensors, the shards its index names, or
    pytorch_model.bin (torch-free: the train rule's inputs, so a changed source retrains)."""
    src = Path(src)
    if (src / INDEX).exists():
        return [src / f for f in sorted(set(_json(src / INDEX).get("weight_map", {}).values()))]
    for name in WEIGHTS:
        if (src / name).exists():
            return [src / name]
    raise UserError(f"{src}: no model.safetensors, {INDEX} or pytorch_model.bin; init_from hf:<dir> takes a "
                    f"Hugging Face Llama directory (what save_pretrained writes)")


def _rope(conf):
    """(rope type, theta) from transformers 4's rope_theta/rope_scaling or 5's rope_parameters."""
    rope = {**(conf.get("rope_parameters") or {}), **(conf.get("rope_scaling") or {})}
    return rope.get("rope_type", rope.get("type", "default")), rope.get("rope_theta", conf.get("rope_theta", 10000.0))


def read_config(src):
    """-> (our n=1 ModelConfig, tie_word_embeddings) of the HF Llama at `src`; UserError for what we cannot
    represent."""
    from mtp.nn.model import ModelConfig
    path = Path(src) / "config.json"
    conf = _json(path)
    if conf.get("model_type") != "llama":
        raise UserError(f"{path}: model_type is {conf.get('model_type')!r}; init_from hf: takes Llama-architecture "
                        f"models only (model_type llama)")
    missing = [k for k in REQUIRED if not isinstance(conf.get(k), int)]
    if missing:
        raise UserError(f"{path}: key '{missing[0]}' is missing or not a whole number (a LlamaConfig has it)")
    d, nh = conf["hidden_size"], conf["num_attention_heads"]
    rope_type, theta = _rope(conf)
    nkv = conf.get("num_key_value_heads") or nh
    needs = [("head_dim", conf.get("head_dim") or d // nh, d // nh,
              "our head size is hidden_size / num_attention_heads"),
             ("rope_scaling" if conf.get("rope_scaling") else "rope_parameters.rope_type", rope_type, "default",
              "rope scaling is not in our rotary embedding"),
             ("attention_bias", bool(conf.get("attention_bias")), False, "our projections have no bias"),
             ("mlp_bias", bool(conf.get("mlp_bias")), False, "our projections have no bias"),
             ("hidden_act", conf.get("hidden_act", "silu"), "silu", "our MLP is SwiGLU")]
    for key, got, want, why in needs:
        if got != want:
            raise UserError(f"{path}: {key} is {got!r} where mtp's model needs {want!r} ({why}); add heads to a "
                            f"model without it, or train one of ours from scratch")
    try:
        cfg = ModelConfig(vocab_size=conf["vocab_size"], dim=d, n_layers=conf["num_hidden_layers"], n_attn_heads=nh,
                          n_kv_heads=nkv, tie_embeddings=bool(conf.get("tie_word_embeddings")), max_seq_len=conf.get("max_position_embeddings", 2048),
                          norm_eps=conf.get("rms_norm_eps", 1e-6), rope_theta=float(theta),
                          ffn_dim=conf["intermediate_size"])
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return cfg, bool(conf.get("tie_word_embeddings"))


def read_weights(src):
    """Every tensor of the weights file(s), by HF name."""
    import torch
    from safetensors.torch import load_file
    out = {}
    for f in weight_files(src):
        if not f.exists():
            raise UserError(f"{f}: not found (named by {INDEX}); download every shard")
        out.update(load_file(str(f)) if f.suffix == ".safetensors"
                   else torch.load(f, map_location="cpu", weights_only=True))
    return out


def convert(cfg, weights, tied, src):
    """HF tensors -> our n=1 state dict (float32), through mtp.formats.export.hf_name read backwards."""
    import torch

    from mtp.formats.export import hf_name
    from mtp.nn.model import MTPModel
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in MTPModel(cfg).state_dict().items()}
    names = {hf_name(k, cfg.n_trunk): k for k in shapes}  # HF name -> ours
    weights = {k: v for k, v in weights.items() if not k.endswith("rotary_emb.inv_freq")}  # old files store it
    if tied and "model.embed_tokens.weight" in weights:
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    for key in [*names, *weights]:
        if key not in weights or key not in names:
            why = "is missing" if key not in weights else "has no place in mtp's model (not a plain Llama)"
            raise UserError(f"{src}: weights key '{key}' {why}; init_from hf: reads LlamaForCausalLM's names")
        if weights[key].shape != shapes[names[key]]:
            raise UserError(f"{src}: weights key '{key}' has shape {tuple(weights[key].shape)}, config.json "
                            f"implies {tuple(shapes[names[key]])}")
    return {names[k]: v.float() for k, v in weights.items()}


def read(src):
    """-> (ModelConfig, state dict) of the HF Llama directory `src` as our n=1 model."""
    cfg, tied = read_config(src)
    return cfg, convert(cfg, read_weights(src), tied, Path(src))
