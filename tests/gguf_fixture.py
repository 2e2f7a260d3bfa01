"""A tiny Llama-architecture GGUF file for the tests, written here (no network, no llama.cpp).

write_tiny_llama_gguf(path) writes F32 tensors under llama.cpp's names (token_embd, blk.N.attn_q, ..., output_norm,
output unless tied) with attn_q/attn_k permuted as llama.cpp's convert_hf_to_gguf does (transformers undoes it on
load), the Llama hyperparameters (GQA: head_count_kv), and a byte-level BPE tokenizer (tokenizer.ggml.model gpt2,
trained here: 256 bytes + <|endoftext|>=0, <|im_start|>=1 bos, <|im_end|>=2 eos + a few merges). It returns the
float32 tensors it wrote under their Hugging Face names (model.embed_tokens.weight, model.layers.N.self_attn.q_proj
.weight, ..., lm_head.weight unless tied): what `AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)` must
give back bit for bit.
"""
import gguf
import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1 (bos), 2 (eos)
BOS_ID, EOS_ID = 1, 2

_CORPUS = [
    "def f(x):\n    return x + 1\n",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "for i in range(10):\n    print(i)\n",
    "class Foo:\n    def __init__(self, value):\n        self.value = value\n",
    "import os\nimport sys\n\nif __name__ == '__main__':\n    main()\n",
    "while True:\n    x = x * 2\n    if x > 100:\n        break\n",
]


def build_byte_level_bpe(vocab_size=300):
    """A small GPT-2 style byte-level BPE: the 256 bytes, the special tokens (first) and a few merges."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok


def _permute_for_gguf(w, n_head):
    """llama.cpp's convert_hf_to_gguf `permute` (HF rotate-half layout -> GGML interleaved); transformers'
    LlamaTensorProcessor reverses it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _merges(tok):
    import json
    return [" ".join(m) if isinstance(m, list) else m for m in json.loads(tok.to_str())["model"]["merges"]]


def write_tiny_llama_gguf(path, *, vocab_size=300, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn=96, tied=True,
                          seed=0, scale=0.02, context_length=256, rope_theta=10000.0, rms_eps=1e-5):
    """Write the GGUF file `path`; -> {HF name: float32 tensor} of what it holds. scale: the weights' std (a larger
    one gives peaked logits, so greedy argmaxes are not near-ties)."""
    tok = build_byte_level_bpe(vocab_size)
    v = tok.get_vocab(with_added_tokens=True)
    tokens = [t for t, _ in sorted(v.items(), key=lambda kv: kv[1])]
    assert [v[t] for t in tokens] == list(range(len(tokens))), "token ids must be contiguous"
    assert tokens[:3] == SPECIAL_TOKENS
    types = [gguf.TokenType.CONTROL if t in SPECIAL_TOKENS else gguf.TokenType.NORMAL for t in tokens]
    n_vocab, head_dim = len(tokens), dim // n_heads
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g) * scale).float()

    def norm(n):
        return (1.0 + 0.1 * torch.randn(n, generator=g)).float()

    hf, ggml = {}, []

    def put(hf_name, gguf_name, t, permute_heads=None):
        hf[hf_name] = t
        a = t.numpy().astype(np.float32, copy=True)
        ggml.append((gguf_name, np.ascontiguousarray(a if permute_heads is None else _permute_for_gguf(a, permute_heads))))

    put("model.embed_tokens.weight", "token_embd.weight", rnd(n_vocab, dim))
    for i in range(n_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        put(p + "input_layernorm.weight", b + "attn_norm.weight", norm(dim))
        put(p + "self_attn.q_proj.weight", b + "attn_q.weight", rnd(n_heads * head_dim, dim), n_heads)
        put(p + "self_attn.k_proj.weight", b + "attn_k.weight", rnd(n_kv_heads * head_dim, dim), n_kv_heads)
        put(p + "self_attn.v_proj.weight", b + "attn_v.weight", rnd(n_kv_heads * head_dim, dim))
        put(p + "self_attn.o_proj.weight", b + "attn_output.weight", rnd(dim, n_heads * head_dim))
        put(p + "post_attention_layernorm.weight", b + "ffn_norm.weight", norm(dim))
        put(p + "mlp.gate_proj.weight", b + "ffn_gate.weight", rnd(ffn, dim))
        put(p + "mlp.up_proj.weight", b + "ffn_up.weight", rnd(ffn, dim))
        put(p + "mlp.down_proj.weight", b + "ffn_down.weight", rnd(dim, ffn))
    put("model.norm.weight", "output_norm.weight", norm(dim))
    if not tied:
        put("lm_head.weight", "output.weight", rnd(n_vocab, dim))

    w = gguf.GGUFWriter(str(path), "llama")  # general.architecture
    w.add_name("tiny-llama-test")  # not "mistral": transformers would switch the architecture
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_context_length(context_length)
    w.add_embedding_length(dim)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    w.add_rope_freq_base(rope_theta)
    w.add_layer_norm_rms_eps(rms_eps)
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(_merges(tok))
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_add_bos_token(False)
    for name, arr in ggml:
        w.add_tensor(name, arr)  # float32 -> GGML F32, HF (out, in) shape as is
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return hf
