"""The registry of head types: what a model's n output heads are made of (train.head_type).

torch-free (config validation and the Snakefile read it at parse time). Each entry declares what the rest of
the pipeline needs to know about it, so that no stage tests a head type's name:

- `build`: the head's nn.Module class, or "module:attr" naming it (imported when a model is built); it is
  called as build(model_config) and its forward is forward(z, cos, sin, kv=None, mask=None) -> (B, T, C),
  the head's hidden state before the shared final norm and unembedding;
- `attends`: the head has an attention layer, so decoding gives it a KV-cache layer (mtp.decoding.kvcache);
- `takes_block`: each head replaces one trunk block (parameter matching: a model of L layers has a trunk of
  L-n blocks), so n < L is required;
- `params(dim, hidden, kv_dim)`: parameters of one head with SwiGLU width `hidden` and key/value width `kv_dim`
  (num_params, the parameter matching);
- `export`: None when `mtp export` / vLLM can serve the type, else the one-line reason it cannot;
- `first`: head 1's module when it differs from the others (Medusa, sequential: head 1 is the model's last
  transformer block, taking one trunk block);
- `shared`: heads 2..n are one module applied at every depth (its parameters counted once);
- `behaviour_class`: the class (a mtp.nn.heads.base.HeadBehaviour, "module:Class") that owns what the type does beyond
  its modules' forward: its states, its part of the memory-efficient backward, its proposer for decoding, its new
  heads' init when added to a model, its export; default: parallel heads on z, decoded one by one.

Equal parameters: every model of a size (preset) and n has the parameter count of its transformer model, whatever
the head type: all types keep L blocks in all (trunk + the blocks heads take or contain), and the SwiGLU width of
every block is narrowed to pay for what the heads add beyond blocks (linear n*d^2, medusa (n-1)*d^2, sequential
(n-1)*(2d^2+3d)): matched_hidden. Equal up to the rounding of one width unit (3*d*L parameters; < 0.1%).

Add a head type: its module in one new file (its nn.Module, and a behaviour class where it differs from
parallel heads: mtp/nn/heads/), one `register(HeadType(...))` line below (docs/ARCHITECTURE.md).
"""
from dataclasses import dataclass
from typing import Callable, Optional, Union

from mtp.presets import block_matrix_params, hidden_dim
from mtp.registry import Registry, resolve


@dataclass(frozen=True)
class HeadType:
    name: str
    build: Union[str, Callable]
    attends: bool
    takes_block: bool
    params: Callable[[int], int]
    export: Optional[str] = None
    first: Optional[Union[str, Callable]] = None
    behaviour_class: Union[str, Callable] = "mtp.nn.heads.base:HeadBehaviour"
    shared: bool = False

    def blocks(self, n):
        """Transformer blocks n heads take from a size's L (parameter matching): one per head (takes_block), head
        1's (first), head 1's and the one module heads 2..n share (shared), or none."""
        if self.shared:
            return 1 + (n > 1)
        return n if self.takes_block else 1 if self.first else 0

    def module(self, i=1):
        """The nn.Module class of head i (0-based; imports it)."""
        return resolve(self.first if i == 0 and self.first else self.build)

    def behaviour(self):
        """An instance of the type's behaviour class (imports it)."""
        return resolve(self.behaviour_class)(self)


HEAD_TYPES = Registry("head type", "mtp/head_types.py")
PAPER = "transformer"  # the paper's heads: train.head_type's default, a slot name without suffix, what the claims judge
register = HEAD_TYPES.register


def get(name, where="train.head_type"):
    """The registered head type `name`, or a UserError naming the known ones."""
    return HEAD_TYPES.lookup(name, where)


def n_trunk(n_layers, n_heads, head_type):
    """Trunk depth: L less the blocks the heads take (HeadType.blocks)."""
    return n_layers - get(head_type).blocks(n_heads)


def _layers(dim, n_layers, n_heads, head_type, hidden, kv_dim=None):
    """Parameters of the trunk blocks and the heads at SwiGLU width `hidden` (kv_dim: key/value width, default
    dim)."""
    t = get(head_type)
    kv_dim = dim if kv_dim is None else kv_dim
    head = t.params(dim, hidden, kv_dim)
    modules = (n_heads > 1) if t.shared else n_heads - 1 if t.first else n_heads
    heads = _block(dim, hidden, kv_dim) * bool(t.first) + modules * head
    return n_trunk(n_layers, n_heads, head_type) * _block(dim, hidden, kv_dim) + heads


def matched_hidden(dim, n_layers, n_heads=1, head_type="transformer", kv_dim=None):
    """The SwiGLU width at which n heads of `head_type` give the model the parameters of the transformer model of
    the same size (L blocks of Llama's width, mtp.presets.hidden_dim): the transformer's own width for it."""
    h0 = hidden_dim(dim)
    target = n_layers * _block(dim, h0, kv_dim)
    f0 = _layers(dim, n_layers, n_heads, head_type, 0, kv_dim)
    slope = _layers(dim, n_layers, n_heads, head_type, 1, kv_dim) - f0
    return max(1, round((target - f0) / slope))


def num_params(vocab_size, dim, n_layers, n_heads=1, head_type="transformer", hidden=None, kv_dim=None):
    """Parameter count, computed without building the model: embedding V*d + trunk blocks (attention 2d^2 +
    2*d*kv_dim + SwiGLU 3*d*hidden + two norms 2d each) + n heads (the head type's params) + final norm d +
    unembedding d*V. hidden: the SwiGLU width (default: matched_hidden); kv_dim: n_kv_heads * head size (default
    dim)."""
    hidden = matched_hidden(dim, n_layers, n_heads, head_type, kv_dim) if hidden is None else hidden
    return vocab_size * dim + _layers(dim, n_layers, n_heads, head_type, hidden, kv_dim) + dim + dim * vocab_size


def _block(dim, hidden, kv_dim=None):
    return block_matrix_params(dim, hidden, kv_dim) + 2 * dim  # matrices + two RMSNorm weights


register(HeadType("transformer", "mtp.nn.model:Block", attends=True, takes_block=True, params=_block,
                  behaviour_class="mtp.nn.heads.parallel:Fused"))  # Gloeckle et al.: one transformer block per head
register(HeadType("linear", "mtp.nn.heads.parallel:LinearHead", attends=False, takes_block=False,
                  params=lambda d, h, kv: d * d, behaviour_class="mtp.nn.heads.parallel:Fused",
                  export="export supports transformer heads only (vLLM serves each head as a decoder layer); decode "
                         "linear heads natively with `mtp decode`"))  # the paper's Table S4
register(HeadType("medusa", "mtp.nn.heads.medusa:MedusaHead", attends=False, takes_block=False,
                  params=lambda d, h, kv: d * d, first="mtp.nn.model:Block",
                  behaviour_class="mtp.nn.heads.medusa:Medusa"))  # Medusa-1; vLLM's Medusa format (mtp/formats/export.py)
register(HeadType("sequential", "mtp.nn.heads.sequential:SequentialHead", attends=True, takes_block=True,
                  params=lambda d, h, kv: _block(d, h, kv) + 2 * d * d + 3 * d, first="mtp.nn.model:Block",
                  behaviour_class="mtp.nn.heads.sequential:Sequential",
                  export="vLLM 0.32's CPU build runs its first MTP layer for every draft position (MiMo layout) and "
                         "our plugin's drafter takes all drafts from one forward; decode sequential heads natively "
                         "with `mtp decode`, or train head_type recursive, which vLLM's method mtp serves (README: "
                         "Head types)"))
# DeepSeek-V3's MTP modules (mtp/nn/heads/sequential.py): norms, 2d -> d projection, one block, own final norm
register(HeadType("recursive", "mtp.nn.heads.sequential:SequentialHead", attends=True, takes_block=False,
                  params=lambda d, h, kv: _block(d, h, kv) + 2 * d * d + 3 * d, first="mtp.nn.model:Block", shared=True,
                  behaviour_class="mtp.nn.heads.recursive:Recursive"))
# one MTP module at every depth, as vLLM's eagle-style MTP drafting runs it (mtp/nn/heads/recursive.py)
