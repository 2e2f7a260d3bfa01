"""MTPDrafter: vLLM's `medusa` slot filled by our heads 2..k+1 (see __init__)."""
from collections.abc import Iterable

import torch
import torch.nn as nn
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead
from vllm.model_executor.model_loader.weight_utils import default_weight_loader
from vllm.model_executor.models.utils import maybe_prefix


class MTPDrafter(nn.Module):
    """Reads the target's (B, heads*dim) output at each request's last accepted position.

    forward -> (B, k, dim): heads 2..k+1, already normed by the target's shared norm.
    compute_logits -> k tensors (B, V) through the shared unembedding (a copy of lm_head).
    """

    def __init__(self, *, vllm_config, prefix=""):
        super().__init__()
        config = vllm_config.speculative_config.draft_model_config.hf_config
        self.config = config
        self.dim = config.head_hidden_size
        self.k = config.num_heads  # = num_speculative_tokens (MedusaConfig.num_lookahead_tokens)
        if not 1 <= self.k <= config.n_future_tokens - 1:
            raise ValueError(f"num_speculative_tokens={self.k}: this model drafts 1..{config.n_future_tokens - 1} tokens")
        self.lm_head = ParallelLMHead(config.vocab_size, self.dim, prefix=maybe_prefix(prefix, "lm_head"))
        self.logits_processor = LogitsProcessor(config.vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        B = hidden_states.shape[0]
        return hidden_states[:, self.dim:(self.k + 1) * self.dim].reshape(B, self.k, self.dim)  # (B, k, dim)

    def compute_logits(self, hidden_states: torch.Tensor) -> list[torch.Tensor]:
        B = hidden_states.shape[0]
        logits = self.logits_processor(self.lm_head, hidden_states.reshape(B * self.k, self.dim))  # (B*k, V)
        return list(logits.view(B, self.k, -1).unbind(1))

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        params = dict(self.named_parameters())
        loaded = set()
        for name, w in weights:
            if name in params:
                getattr(params[name], "weight_loader", default_weight_loader)(params[name], w)
                loaded.add(name)
        return loaded
