"""Sequential heads: DeepSeek-V3's multi-token prediction modules (arXiv 2412.19437, Section 2.2), registered as head
type "sequential" (mtp/head_types.py).

Head 1 is the model's last transformer block (the next-token head). Head i+1 (i >= 1) is module i: at position t it
reads the previous depth's state h^{i-1}_t (head 2: head 1's final-normed state; head i+1: head i's output) and the
embedding of token t+i (the shared input embedding), RMS-normalises both, concatenates them, projects 2d -> d, runs
one transformer block (causal attention over its own states) and its own RMSNorm; the result goes to the shared
unembedding directly and is what module i+1 reads. It predicts token t+i+1. In training the tokens t+i are the
window's (head i's targets); in decoding the module reads the tokens just drafted (mtp.decode_chain).
"""
import torch
import torch.nn as nn

from mtp.model import Block, RMSNorm


class SequentialHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.hidden_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.token_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.proj = nn.Linear(2 * cfg.dim, cfg.dim, bias=False)
        self.block = Block(cfg)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x, cos, sin, kv=None, mask=None, emb=None):
        """x (B, T, C): the previous depth's state; emb (B, T, C): the embedding of the token this module reads
        -> its state (B, T, C), unembedded without the model's final norm."""
        h = self.proj(torch.cat([self.hidden_norm(x), self.token_norm(emb)], dim=-1))
        return self.norm(self.block(h, cos, sin, kv, mask))
