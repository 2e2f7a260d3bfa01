"""A trained model as a Hugging Face / vLLM directory (the `mtp export` stage: mtp/stages/export.py).

<model dir>/hf/ is a plain Llama checkpoint for trunk + head 1, so `transformers` loads it
as `LlamaForCausalLM` and reproduces head 1's logits exactly:

    ours                          hf/model.safetensors
    tok_emb                       model.embed_tokens
    trunk.{i}, i < L-n            model.layers.{i}
    heads.0   (head 1)            model.layers.{L-n}
    heads.{j}, j >= 1 (head j+1)  model.extra_heads.{j-1}     (Meta's release calls them extra_heads)
    norm, lm_head                 model.norm, lm_head
    inside a block: attn_norm -> input_layernorm, attn.wq/wk/wv/wo -> self_attn.q/k/v/o_proj,
                    mlp_norm -> post_attention_layernorm, mlp.w1/w3/w2 -> mlp.gate/up/down_proj

config.json is a LlamaConfig with num_hidden_layers = L-n+1 (trunk + head 1), the extra field
`n_future_tokens` = n and `architectures` = ["MTPLlamaForCausalLM"] (mtp/serving/plugin) for n > 1,
["LlamaForCausalLM"] for n = 1. transformers ignores `extra_heads` (unexpected keys).
The tokenizer is our tokenizer.json as a PreTrainedTokenizerFast with eos = <|eod|>.

<model dir>/hf-drafter/ (n > 1 only) is the drafter's own config (vLLM `medusa` slot, arch
`MTPDrafter`) plus a copy of lm_head: it reads heads 2..n's normed hidden states from the
target's output and applies the shared unembedding.

Medusa heads (head type "medusa", mtp/nn/heads/medusa.py) export in vLLM's own Medusa format instead, served
with `method: "medusa"` and no class of ours: hf/ is the plain Llama of trunk + head 1 (n_future_tokens 1,
LlamaForCausalLM), and hf-drafter/ is a MedusaModel checkpoint (`blocks.{j}.layers.0.weight` = heads.{j+1}.proj,
one shared `lm_head` with `original_lm_head: true`), reading the target's final-normed last hidden state as
our medusa heads do.
"""
import os
import shutil
import tempfile
from pathlib import Path

from mtp import UserError, head_types
from mtp.nn.model import BLOCK_NAMES

TARGET_ARCH = "MTPLlamaForCausalLM"


def hf_name(name, n_trunk):
    """Our state_dict key -> the exported (HF Llama + extra_heads) key."""
    top = {"tok_emb.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
           "lm_head.weight": "lm_head.weight"}
    if name in top:
        return top[name]
    group, idx, rest = name.split(".", 2)
    idx = int(idx)
    if group == "trunk":
        prefix = f"model.layers.{idx}"
    elif group == "heads":
        prefix = f"model.layers.{n_trunk}" if idx == 0 else f"model.extra_heads.{idx - 1}"
    else:
        raise ValueError(f"unexpected parameter {name}")
    return f"{prefix}.{BLOCK_NAMES[rest]}"


def hf_config(cfg, tok, extra=None):
    """transformers.LlamaConfig for trunk + head 1, with n_future_tokens = n."""
    from transformers import LlamaConfig
    return LlamaConfig(
        architectures=[TARGET_ARCH if cfg.n_heads > 1 else "LlamaForCausalLM"],
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.n_trunk + 1, num_attention_heads=cfg.n_attn_heads,
        num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_embeddings, attention_bias=False, mlp_bias=False,
        bos_token_id=None, eos_token_id=tok.eod_id, pad_token_id=None, dtype="float32",
        n_future_tokens=cfg.n_heads, **(extra or {}))


def refuse_export(cfg, where):
    """UserError when the model's head type cannot be exported (mtp.head_types: its `export` reason)."""
    reason = head_types.get(cfg.head_type).export
    if reason:
        raise UserError(f"{where}: head_type '{cfg.head_type}': {reason}")


def export(model_dir, out_dir=None, drafter_dir=None):
    """Write <model_dir>/hf (and hf-drafter for n > 1). Returns {"hf": path, "drafter": path or None}."""
    import json


    import torch
    from safetensors.torch import save_file
    from transformers import PreTrainedTokenizerFast

    from mtp.checkpoint import load_model
    from mtp.tokenizer import EOD, Tokenizer

    model_dir = Path(model_dir)
    out_dir = Path(out_dir) if out_dir else model_dir / "hf"
    drafter_dir = Path(drafter_dir) if drafter_dir else out_dir.with_name(out_dir.name + "-drafter")
    model, payload = load_model(model_dir)
    cfg = model.cfg
    refuse_export(cfg, model_dir)
    tok_path = Path(payload["data_dir"]) / "tokenizer.json"
    tok = Tokenizer.load(tok_path)
    if tok.vocab_size > cfg.vocab_size:
        raise UserError(f"{tok_path}: tokenizer has {tok.vocab_size} tokens, the model only {cfg.vocab_size}")

    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    target_cfg, target = model.behaviour.export_target(cfg, state)  # medusa: the plain Llama of trunk + head 1
    tensors = {hf_name(k, target_cfg.n_trunk): v for k, v in target.items()}
    tensors, overrides = model.behaviour.export_layout(cfg, state, tensors)  # recursive: MiMo's layout
    if cfg.tie_embeddings:  # tie_word_embeddings: transformers and vLLM take lm_head from embed_tokens
        del tensors["lm_head.weight"]
        state["lm_head.weight"] = state["lm_head.weight"].clone()  # the drafter's own copy (safetensors refuses
        # tensors that share memory)
    source = {k: payload.get(k) for k in ("dataset", "size", "n", "train_run_id")}
    with _atomic_dir(out_dir) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        hf_config(target_cfg, tok, {"mtp_source": source}).save_pretrained(tmp)
        _portable_config(tmp / "config.json", cfg, overrides)
        hf_tok = PreTrainedTokenizerFast(tokenizer_file=str(tok_path), eos_token=tok.hf.id_to_token(tok.eod_id) or EOD)
        hf_tok.model_max_length = cfg.max_seq_len
        hf_tok.save_pretrained(tmp)
        _portable_tokenizer_class(tmp / "tokenizer_config.json")
    if not model.behaviour.writes_drafter(cfg.n_heads):
        return {"hf": str(out_dir), "drafter": None}
    conf, weights = model.behaviour.export_drafter(cfg, state)
    with _atomic_dir(drafter_dir) as tmp:
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(conf, indent=2) + "\n")
    return {"hf": str(out_dir), "drafter": str(drafter_dir)}


def _portable_config(path, cfg, overrides):
    """transformers 5 folds rope_theta into rope_parameters and writes `dtype`; 4.x reads rope_theta, torch_dtype.
    overrides: the head type's (HeadBehaviour.export_layout)."""
    import json
    conf = {**json.loads(path.read_text()), **overrides}
    conf.setdefault("rope_theta", cfg.rope_theta)
    conf.setdefault("torch_dtype", "float32")
    path.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")


def _portable_tokenizer_class(path):
    """transformers 5 writes its new class name TokenizersBackend; 4.x (CUDA vLLM images) knows PreTrainedTokenizerFast."""
    import json
    conf = json.loads(path.read_text())
    conf["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(conf, indent=2) + "\n")


class _atomic_dir:
    """Build a folder in a temporary sibling; replace `path` with it only on success."""

    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        os.chmod(self.tmp, 0o755)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        for f in self.tmp.iterdir():
            os.chmod(f, 0o644)
        old = self.path.with_name(f".{self.path.name}.old.{os.getpid()}")
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)
        return False

