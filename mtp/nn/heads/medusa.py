"""Medusa-1 heads (Cai et al. 2024, arXiv 2401.10774), registered as head type "medusa" (mtp/head_types.py).

Head 1 is the model's last transformer block (the next-token head, as in any base model); heads 2..n are
one residual SiLU block each, y = x + SiLU(W x), on x = the final-normed state of head 1 (Medusa's input:
the base model's last hidden state), and y goes to the unembedding directly. One difference from the
original: the unembedding is shared by every head here (Medusa-1 gives each head its own copy of the LM
head, initialised from it), which keeps the parameter count of n heads at one d x d matrix each.
Added to a model (init_from), the heads start as the identity (zero projections, Medusa-1's init); exported,
the served model is the plain Llama of trunk + head 1 and the drafter vLLM's own Medusa format (mtp/formats/export.py).
"""
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from mtp.nn.heads.base import OnHead1


class MedusaHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x, cos=None, sin=None, kv=None, mask=None):
        """x (B, T, C): head 1's normed state -> (B, T, C), unembedded without the final norm."""
        return x + F.silu(self.proj(x))


def medusa_drafter(cfg, state):
    """hf-drafter/ of medusa heads: (config.json dict, tensors) in vLLM's Medusa format (vllm/model_executor/models/
    medusa.py: ResidualBlock x + SiLU(W x), one layer per head, the LM head shared: original_lm_head)."""
    conf = {"model_type": "medusa", "architectures": ["MedusaModel"], "hidden_size": cfg.dim,
            "vocab_size": cfg.vocab_size, "num_heads": cfg.n_heads - 1, "num_hidden_layers": 1,
            "original_lm_head": True, "medusa_fc_bias": False, "dtype": "float32"}
    tensors = {f"blocks.{j - 1}.layers.0.weight": state[f"heads.{j}.proj.weight"] for j in range(1, cfg.n_heads)}
    return conf, {**tensors, "lm_head.weight": state["lm_head.weight"]}


class Medusa(OnHead1):
    def new_heads(self, model, state):
        return {f"heads.{j}.proj.weight": torch.zeros_like(model.heads[j].proj.weight)
                for j in range(1, model.cfg.n_heads)}

    def export_target(self, cfg, state):
        """The plain Llama of trunk + head 1: heads 2..n live in the drafter."""
        kept = {k: v for k, v in state.items() if not k.startswith("heads.") or k.startswith("heads.0.")}
        return replace(cfg, n_heads=1, ffn_dim=cfg.hidden_dim), kept

    def export_drafter(self, cfg, state):
        return medusa_drafter(cfg, state)
