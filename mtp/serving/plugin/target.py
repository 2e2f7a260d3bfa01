"""MTPLlamaForCausalLM: the exported model inside vLLM, every head a decoder layer (see __init__)."""
import re
from collections.abc import Iterable

import torch
from vllm.model_executor.models.llama import LlamaDecoderLayer, LlamaForCausalLM, LlamaModel


def served_heads(config):
    """Heads run per forward: mtp_serve_heads (an hf_override) or all n_future_tokens."""
    n = getattr(config, "n_future_tokens", 1)
    k = getattr(config, "mtp_serve_heads", None) or n
    if not 1 <= k <= n:
        raise ValueError(f"mtp_serve_heads={k} but the model has {n} heads")
    return k


class MTPLlamaModel(LlamaModel):
    """Llama layers 0..L-n (trunk + head 1), then heads 2..m as layers L-n+1..L-n+m-1."""

    def __init__(self, *, vllm_config, prefix="", layer_type=LlamaDecoderLayer):
        super().__init__(vllm_config=vllm_config, prefix=prefix, layer_type=layer_type)
        if len(self.layers) != self.config.num_hidden_layers or self.start_layer != 0:
            raise ValueError("MTPLlamaForCausalLM does not support pipeline parallelism")
        self.n_heads = served_heads(self.config)
        self.n_trunk = self.config.num_hidden_layers - 1
        first = self.config.num_hidden_layers
        self.layers.extend(layer_type(vllm_config=vllm_config, prefix=f"{prefix}.layers.{first + j}")
                           for j in range(self.n_heads - 1))

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        """-> (T, heads * dim): head i's normed hidden state in columns [i*dim, (i+1)*dim)."""
        x = inputs_embeds if inputs_embeds is not None else self.embed_input_ids(input_ids)
        residual = None
        for layer in self.layers[:self.n_trunk]:
            x, residual = layer(positions, x, residual)
        z = x if residual is None else x + residual  # trunk output (T, dim)
        outs = []
        for layer in self.layers[self.n_trunk:]:
            h, res = layer(positions, z.clone(), None)  # clone: vLLM's fused add-norm writes in place
            outs.append(self.norm(h, res)[0])
        return torch.cat(outs, dim=-1)


class MTPLlamaForCausalLM(LlamaForCausalLM):
    # exported name -> vLLM name: extra head j (head j+2) is decoder layer L-n+1+j
    _EXTRA = re.compile(r"^model\.extra_heads\.(\d+)\.")

    def _init_model(self, vllm_config, prefix="", layer_type=LlamaDecoderLayer):
        return MTPLlamaModel(vllm_config=vllm_config, prefix=prefix, layer_type=layer_type)

    def compute_logits(self, hidden_states):
        return super().compute_logits(hidden_states[..., :self.config.hidden_size])  # head 1 only

    def compute_logits_local(self, hidden_states):
        return super().compute_logits_local(hidden_states[..., :self.config.hidden_size])

    def get_top_tokens(self, hidden_states):
        return super().get_top_tokens(hidden_states[..., :self.config.hidden_size])

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        first, served = self.config.num_hidden_layers, self.model.n_heads

        def renamed():
            for name, w in weights:
                m = self._EXTRA.match(name)
                if m is None:
                    yield name, w
                elif int(m[1]) < served - 1:  # heads not served are skipped
                    yield f"model.layers.{first + int(m[1])}." + name[m.end():], w

        return super().load_weights(renamed())
