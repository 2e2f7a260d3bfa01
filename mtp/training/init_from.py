"""Heads added to a model that already exists: a sweep entry with `init_from: mtp:<model dir>` starts from an n=1
model of ours instead of from scratch (issue #15, part 2; Hugging Face sources, `hf:<dir>`, are not built yet).

The source's trunk and its one head become the new model's trunk and head 1, unchanged; the n-1 new heads
start as copies of head 1 (transformer heads: the last layer, as the paper's finetuning does) or as the
identity (medusa heads: zero projections, Medusa-1's init). `train.freeze: trunk` then trains the new heads
only (tok_emb, trunk, head 1, the final norm and the unembedding keep their values exactly, so greedy output
is the source model's and any speed-up is free); `freeze: none` trains everything (the paper's Table S6).
The data must be the source's own dataset (its tokenizer).
"""
from pathlib import Path

import torch

from mtp import UserError, head_types

FROZEN = ("tok_emb.", "trunk.", "heads.0.", "norm.", "lm_head.")  # what freeze: trunk keeps


def source_dir(init_from):
    kind, _, path = init_from.partition(":")
    if kind != "mtp":
        raise UserError(f"init_from '{init_from}': only mtp:<model dir> (an n=1 model of ours) is supported yet")
    return Path(path)


def read(entry):
    """The source's model.pt payload (config and weights), read once for config_from and load_source."""
    from mtp.checkpoint import load
    return load(source_dir(entry["init_from"]) / "model.pt")


def config_from(entry, payload, vocab_size):
    """The new model's ModelConfig: the source's shape, its trunk depth kept, n heads of the entry's type."""
    from mtp.checkpoint import model_config
    from mtp.model import ModelConfig
    src = source_dir(entry["init_from"])
    mc = model_config(payload)
    if mc["n_heads"] != 1 or mc.get("head_type", "transformer") != "transformer":
        raise UserError(f"init_from {src}: the source must be an n=1 transformer model, it has n={mc['n_heads']} "
                        f"{mc.get('head_type')} heads")
    if mc["vocab_size"] != vocab_size:
        raise UserError(f"init_from {src}: its vocabulary ({mc['vocab_size']}) is not dataset "
                        f"'{entry['dataset']}''s ({vocab_size}); add heads on the source's own dataset")
    ht = head_types.get(entry["train"]["head_type"])
    if not (ht.takes_block or ht.first):
        raise UserError(f"init_from: head type '{ht.name}' has no transformer head 1 to keep the source's last layer")
    trunk = mc["n_layers"] - 1
    n = entry["n"]
    return ModelConfig(**{**mc, "n_heads": n, "head_type": ht.name, "n_layers": trunk + (n if ht.takes_block else 1)})


def load_source(model, payload):
    """Copy the source's weights (read()'s payload) into `model` (built by config_from): head 1 and the trunk as
    they are, the new heads as copies of head 1 (transformer) or zero projections (medusa)."""
    state = payload["model"]
    new = dict(state)
    for j in range(1, model.cfg.n_heads):
        if model.reads_head1:
            new[f"heads.{j}.proj.weight"] = torch.zeros_like(model.heads[j].proj.weight)
        else:
            new.update({f"heads.{j}." + k[len("heads.0."):]: v.clone() for k, v in state.items()
                        if k.startswith("heads.0.")})
    model.load_state_dict(new, strict=True)


def freeze(model, what):
    """train.freeze: 'trunk' keeps FROZEN fixed (no gradient), 'none' trains everything."""
    if what == "trunk":
        for name, p in model.named_parameters():
            if name.startswith(FROZEN):
                p.requires_grad_(False)
