"""The behaviour of a head type (mtp/head_types.py names each type's class; mtp.nn.model.MTPModel holds an instance as
`model.behaviour`). HeadBehaviour is the paper's layout: n parallel heads, each reading the trunk's z, their states
through the shared final norm and unembedding; OnHead1 is the layout where heads 2..n read head 1's normed state.
A head type overrides only what differs (docs/ARCHITECTURE.md: adding a head type)."""
from mtp.nn.heads.proposer import Proposer


def drafter_config(cfg):
    """config.json of hf-drafter/ (read by vLLM as a MedusaConfig: keys holding 'num' are renamed, keep them few).

    hidden_size is the width of what the drafter reads: n normed hidden states side by side
    (MedusaProposer's warm-up feeds zeros of that width). num_heads = n-1 is the most drafts;
    vLLM sets it to num_speculative_tokens.
    """
    return {"model_type": "medusa", "architectures": ["MTPDrafter"], "hidden_size": cfg.n_heads * cfg.dim,
            "head_hidden_size": cfg.dim, "n_future_tokens": cfg.n_heads, "vocab_size": cfg.vocab_size,
            "num_heads": cfg.n_heads - 1, "num_hidden_layers": 1, "dtype": "float32"}


def _selected(model, heads, kvs):
    """states()'s defaults: every head, no KV-cache layers."""
    heads = list(range(model.cfg.n_heads) if heads is None else heads)
    return heads, [None] * len(heads) if kvs is None else kvs


class HeadBehaviour:
    def __init__(self, entry):
        self.entry = entry  # the torch-free registry entry (mtp.head_types.HeadType)
        self.name = entry.name
        # decode.compile: compile the drafting a proposer runs in Python per step (sequential heads' module passes)
        self.compile_drafting = False
        self.exports_drafter = True  # `mtp export` writes hf-drafter/ (n > 1): export_drafter

    def modules(self, cfg):
        """The model's n head modules, head 1 first."""
        return [self.entry.module(i)(cfg) for i in range(cfg.n_heads)]

    def normed(self, i):
        """Whether head i's state (0-based) goes through the shared final norm before the unembedding."""
        return True

    def states(self, model, z, cos, sin, heads=None, kvs=None, mask=None, ahead=None):
        """z (B, T, C) -> the states (B, T, C) of the heads in `heads` (0-based; default all), for model.logits.
        kvs: a KV-cache layer (or None) per head of `heads` when decoding; ahead: the targets of heads 2..n
        (training's targets: read by heads that take the tokens ahead)."""
        heads, kvs = _selected(model, heads, kvs)
        return [model.heads[i](z, cos, sin, kvs[j], mask) for j, i in enumerate(heads)]

    def backward(self, model, z, cos, sin, ys, ctx, loss, objective):
        """The heads' part of the memory-efficient backward (mtp.training.step): each head's state on the leaf z,
        its loss backpropagated at once (loss(i, h, y, cand, greedy) -> (loss, greedy tokens)), so dL/dz gathers in
        z.grad -> the heads' losses."""
        with ctx:
            h1 = model.heads[0](z, cos, sin)
        first, g = loss(0, h1, ys[0], greedy=objective.targets == "greedy")
        ys = objective.head_targets(ys, g)
        cand, losses = objective.candidates(ys), [first]
        for i, y in enumerate(ys[1:], start=1):
            with ctx:
                h = model.heads[i](z, cos, sin)
            losses.append(loss(i, h, y, cand)[0])
        return losses

    def proposer(self, model, k):
        """Heads 1..k+1 for decoding (mtp.nn.heads.proposer)."""
        return Proposer(model, k)

    def check_targets(self, targets):
        """Refuse a train.targets the head type cannot train on (UserError)."""

    def new_heads(self, model, state):
        """Heads 2..n of a model whose trunk and head 1 come from `state` (a source's weights: init_from) ->
        {state_dict key: tensor}; here copies of head 1 (the paper's finetuning starts from the last layer)."""
        ones = {k[len("heads.0."):]: v for k, v in state.items() if k.startswith("heads.0.")}
        return {f"heads.{j}.{k}": v.clone() for j in range(1, model.cfg.n_heads) for k, v in ones.items()}

    def export_target(self, cfg, state):
        """What `mtp export` writes as the served model: (its ModelConfig, its tensors, our names); here every
        head (mtp.formats.export: heads 2..n as extra_heads)."""
        return cfg, state

    def export_layout(self, cfg, state, tensors):
        """The served model's tensors (HF names) and config.json overrides, from the exported target's `tensors`
        and our whole `state`; here the HF Llama layout as it is."""
        return tensors, {}

    def writes_drafter(self, n_heads):
        """Whether `mtp export` writes hf-drafter/ for a model of this type with n_heads heads."""
        return n_heads > 1 and self.exports_drafter

    def export_drafter(self, cfg, state):
        """(config.json dict, tensors) of the drafter `mtp export` writes for n > 1 where `exports_drafter`: our
        plugin's MTPDrafter (mtp/serving/plugin/drafter.py) and a copy of the unembedding."""
        return drafter_config(cfg), {"lm_head.weight": state["lm_head.weight"]}

    def served(self, exported, k):
        """How vLLM serves heads 1..k+1 of the export (k = 0: head 1 alone) -> (hf_overrides, speculative_config or
        None): our plugin's target with k+1 heads and its drafter in vLLM's medusa slot."""
        if k == 0:
            return {"mtp_serve_heads": 1}, None
        return {"mtp_serve_heads": k + 1}, {"method": "medusa", "model": exported["drafter"], "num_speculative_tokens": k}


class OnHead1(HeadBehaviour):
    """Heads 2..n read head 1's final-normed state instead of z (head 1: the model's last transformer block), and
    their states go to the unembedding without the final norm (Medusa-1's layout)."""

    def normed(self, i):
        return i == 0

    def head_input(self, model, i, h1, prev, ahead):
        """What head i (0-based, i >= 1) runs on -> (input, keyword arguments): head 1's normed state."""
        return model.norm(h1), {}

    def states(self, model, z, cos, sin, heads=None, kvs=None, mask=None, ahead=None):
        heads, kvs = _selected(model, heads, kvs)
        h1 = model.heads[0](z, cos, sin, kvs[0] if heads[0] == 0 else None, mask)
        out, prev = [], h1
        for j, i in enumerate(heads):
            if i > 0:
                x, kw = self.head_input(model, i, h1, prev, ahead)
                prev = model.heads[i](x, cos, sin, kvs[j], mask, **kw)
            out.append(h1 if i == 0 else prev)
        return out

    def backward(self, model, z, cos, sin, ys, ctx, loss, objective):
        """Each head's state is cut from the graph (a leaf) and its loss backpropagated into the leaf's grad; the
        leaves' grads then run back through the heads in reverse order (head i+1's input may be head i's state)
        into dL/dh_1, and through head 1 into z.grad."""
        with ctx:
            h1 = model.heads[0](z, cos, sin)
        cut = [(h1, h1.detach().requires_grad_(h1.requires_grad))]  # (state in the graph, its leaf)
        first, g = loss(0, cut[0][1], ys[0], greedy=objective.targets == "greedy")
        ahead, ys = ys, objective.head_targets(ys, g)  # heads that read tokens ahead read the data's
        cand, losses = objective.candidates(ys), [first]
        for i, y in enumerate(ys[1:], start=1):
            with ctx:
                inp, kw = self.head_input(model, i, cut[0][1], cut[-1][1], ahead)
                h = model.heads[i](inp, cos, sin, **kw)
            cut.append((h, h.detach().requires_grad_(True)))
            losses.append(loss(i, cut[-1][1], y, cand)[0])
        for h, leaf in reversed(cut):  # head n first: its leaf's grad is complete before its input's is used
            if h.requires_grad and leaf.grad is not None:  # under train.freeze: trunk head 1 keeps no graph
                h.backward(leaf.grad)
        return losses
