"""Named model sizes and the size of one block, without torch (config validation and the Snakefile use them at
parse time; mtp.nn.model builds the model from them; a whole model's parameter count: mtp.head_types.num_params)."""
import math

from mtp import UserError

# dim / layers / attention heads. Synthetic-task sizes and code sizes from the paper
# (Section 4, Table S7); "debug" for tests.
PRESETS = {
    "debug": dict(dim=32, n_layers=4, n_attn_heads=2),
    "1M": dict(dim=128, n_layers=5, n_attn_heads=4),
    "3M": dict(dim=256, n_layers=4, n_attn_heads=8),
    "10M": dict(dim=384, n_layers=6, n_attn_heads=8),
    "30M": dict(dim=512, n_layers=10, n_attn_heads=8),
    "100M": dict(dim=768, n_layers=14, n_attn_heads=12),
    "300M": dict(dim=1024, n_layers=25, n_attn_heads=16),
    "0.3B": dict(dim=1024, n_layers=18, n_attn_heads=8),
    "0.6B": dict(dim=1280, n_layers=27, n_attn_heads=10),
    "1.3B": dict(dim=2048, n_layers=24, n_attn_heads=16),
}


def preset(name, extra=None, where="size"):
    table = {**PRESETS, **(extra or {})}
    if name not in table:
        raise UserError(f"{where}: unknown size preset '{name}'; known: {', '.join(table)} "
                        f"(add your own under model_presets)")
    return table[name]


def hidden_dim(dim):
    return 32 * math.ceil(8 * dim / 3 / 32)  # SwiGLU width, as in Llama


def block_matrix_params(dim, hidden=None, kv_dim=None):
    """Matrix parameters of one transformer block: attention 2d^2 + 2*d*kv_dim (q, o; k, v: kv_dim = n_kv_heads *
    head size, default d) + SwiGLU 3*d*hidden (default: Llama's width; norms not counted)."""
    kv_dim = dim if kv_dim is None else kv_dim
    return 2 * dim * dim + 2 * dim * kv_dim + 3 * dim * (hidden_dim(dim) if hidden is None else hidden)


def train_flops_per_step(n, s):
    """6 x (matmul parameters touched per token) + attention, for a batch of batch x seq tokens (s: vocab, dim,
    n_layers, seq, batch)."""
    d = s["dim"]
    block = block_matrix_params(d)
    per_token = 6 * (s["n_layers"] * block + n * d * s["vocab"]) + 6 * 2 * s["n_layers"] * s["seq"] * d
    return per_token * s["batch"] * s["seq"]
