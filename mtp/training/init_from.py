"""Heads added to a model that already exists: a sweep entry with `init_from` starts from an n=1 model instead of
from scratch (issue #15, part 2). Two sources:
  mtp:<model dir>  an n=1 model of ours (model.pt), trained on the sweep's dataset;
  hf:<dir>         a Hugging Face Llama directory (config.json, model.safetensors or pytorch_model.bin, tokenizer.json;
                   mtp/formats/hf_llama.py maps its names onto ours and refuses what our model cannot represent); the
                   sweep's dataset is tokenized with its own tokenizer (tokenizer: {kind: hf, path: <dir>}).
  gguf:<file>      a Llama-architecture GGUF file, or <package>/<file> inside an installed package (mtp/formats/gguf.py:
                   dequantized by transformers, written once as an HF directory under <results>/sources/, then read
                   as hf:); its dataset: tokenizer: {kind: gguf, path: <file>}.
The sweep's `sizes` names a preset with the source's shape (dim, n_layers, n_attn_heads, n_kv_heads; checked here).

The source's trunk and its one head (an HF model's last decoder layer; its final norm and lm_head are our shared
norm and unembedding) become the new model's trunk and head 1, unchanged; the n-1 new heads start as copies of head
1 (transformer heads: the last layer, as the paper's finetuning does), as the identity (medusa heads: zero
projections, Medusa-1's init) or freshly initialised (sequential heads). `train.freeze: trunk` then trains the new
heads only (tok_emb, trunk, head 1, the final norm and the unembedding keep their values exactly, so greedy output
is the source model's and any speed-up is free); `freeze: none` trains everything (the paper's Table S6).
"""
from dataclasses import asdict
from pathlib import Path


from mtp import UserError, head_types
from mtp.presets import preset

FROZEN = ("tok_emb.", "trunk.", "heads.0.", "norm.", "lm_head.")  # what freeze: trunk keeps
SHAPE = ("dim", "n_layers", "n_attn_heads", "n_kv_heads")  # what the sweep's size preset must share with the source


def source(init_from):
    """-> (kind, directory) of a sweep's init_from."""
    kind, _, path = init_from.partition(":")
    if kind not in ("mtp", "hf", "gguf"):
        raise UserError(f"init_from '{init_from}': give mtp:<model dir> (an n=1 model of ours), hf:<dir> "
                        f"(a Hugging Face Llama directory) or gguf:<file> (a Llama GGUF file)")
    return kind, Path(path)


def read(entry, results=None):
    """The source as a model.pt payload (model_config, model: the weights), read once for config_from and
    load_source. results: the study's results folder (a GGUF source's HF directory is cached under it)."""
    kind, src = source(entry.init_from)
    if kind in ("hf", "gguf"):
        from mtp.formats import gguf as gguf_llama, hf_llama
        mcfg, state = hf_llama.read(gguf_llama.hf_dir(src, results) if kind == "gguf" else src)
        return {"model_config": asdict(mcfg), "model": state}
    from mtp.checkpoint import load
    return load(src / "model.pt")


def config_from(entry, payload, vocab_size, presets=None):
    """The new model's ModelConfig: the source's shape, its trunk depth kept, n heads of the entry's type."""
    from mtp.checkpoint import model_config
    from mtp.nn.model import ModelConfig
    kind, src = source(entry.init_from)
    mc = model_config(payload)
    if mc["n_heads"] != 1 or mc.get("head_type", head_types.PAPER) != head_types.PAPER:
        raise UserError(f"init_from {src}: the source must be an n=1 transformer model, it has n={mc['n_heads']} "
                        f"{mc.get('head_type')} heads")
    if mc["vocab_size"] != vocab_size and (kind == "mtp" or vocab_size > mc["vocab_size"]):
        fix = ("add heads on the source's own dataset" if kind == "mtp" else
               f"tokenize it with the source's tokenizer (tokenizer: {{kind: hf, path: {src}}})")
        raise UserError(f"init_from {src}: its vocabulary ({mc['vocab_size']}) is not dataset "
                        f"'{entry.dataset}''s ({vocab_size}); {fix}")
    spec = preset(entry.size, presets)
    spec = {**spec, "n_kv_heads": spec.get("n_kv_heads", spec["n_attn_heads"])}
    mc = {**mc, "n_kv_heads": mc.get("n_kv_heads") or mc["n_attn_heads"]}
    if any(spec[k] != mc[k] for k in SHAPE):
        shape = ", ".join(f"{k}: {mc[k]}" for k in SHAPE)
        raise UserError(f"init_from {src}: size '{entry.size}' is not the source's shape; name a preset of it "
                        f"in the sweep's sizes (model_presets: {{{entry.size}: {{{shape}}}}})")
    ht = head_types.get(entry.train["head_type"])
    if not ht.first and not ht.takes_block:
        raise UserError(f"init_from: head type '{ht.name}' has no transformer head 1 to keep the source's last layer")
    trunk = mc["n_layers"] - 1
    n = entry.n_heads
    return ModelConfig(**{**mc, "n_heads": n, "head_type": ht.name, "n_layers": trunk + ht.blocks(n),
                          "ffn_dim": ModelConfig(**mc).hidden_dim})  # the source's width: no parameter matching


def load_source(model, payload):
    """Copy the source's weights (read()'s payload) into `model` (built by config_from): head 1 and the trunk as
    they are, the new heads as copies of head 1 (transformer), zero projections (medusa) or as built (sequential:
    fresh modules, as DeepSeek-V3 trains them)."""
    state = payload["model"]
    model.load_state_dict({**model.state_dict(), **state, **model.behaviour.new_heads(model, state)}, strict=True)


def freeze(model, what):
    """train.freeze: 'trunk' keeps FROZEN fixed (no gradient), 'none' trains everything."""
    if what == "trunk":
        for name, p in model.named_parameters():
            if name.startswith(FROZEN):
                p.requires_grad_(False)
