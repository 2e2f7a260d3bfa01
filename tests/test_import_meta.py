"""`mtp import meta`: a small checkpoint written here in the layout of Meta's multi-token release, with its own
reference forward in the Llama-2 style (complex rotary on interleaved pairs); after import, every head's logits
equal the reference, the tokenizer round-trips, and the model decodes and exports like one of ours.
As in the release, params.json's n_layers counts every block: `layers` holds n_layers - n_future_tokens + 1."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from mtp import UserError, cli
from mtp.checkpoint import load_model
from mtp.decoding.engine import decode
from mtp.formats.export import export
from mtp.formats.meta import import_meta
from mtp.tokenizer import Tokenizer

PARAMS = {"dim": 32, "n_layers": 5, "n_heads": 4, "vocab_size": -1, "multiple_of": 16, "norm_eps": 1e-5,
          "rope_theta": 10000.0, "n_future_tokens": 3}


def _ffn_dim(p):
    hidden = int(2 * 4 * p["dim"] / 3)
    return p["multiple_of"] * math.ceil(hidden / p["multiple_of"])  # Llama-2's rule (48 here; ours would be 96)


def meta_weights(p, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    d, f, n = p["dim"], _ffn_dim(p), p["n_future_tokens"]
    kv = d // p["n_heads"] * p.get("n_kv_heads", p["n_heads"])  # key/value width (grouped-query attention)

    def w(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    def block(prefix):
        return {f"{prefix}.attention.wq.weight": w(d, d), f"{prefix}.attention.wk.weight": w(kv, d),
                f"{prefix}.attention.wv.weight": w(kv, d), f"{prefix}.attention.wo.weight": w(d, d),
                f"{prefix}.feed_forward.w1.weight": w(f, d), f"{prefix}.feed_forward.w3.weight": w(f, d),
                f"{prefix}.feed_forward.w2.weight": w(d, f), f"{prefix}.attention_norm.weight": 1 + w(d, scale=0.1),
                f"{prefix}.ffn_norm.weight": 1 + w(d, scale=0.1)}
    out = {"tok_embeddings.weight": w(vocab, d, scale=1.0), "norm.weight": 1 + w(d, scale=0.1),
           "output.weight": w(vocab, d)}
    for i in range(p["n_layers"] - n + 1):  # the release's count: n_layers covers layers and extra_heads
        out.update(block(f"layers.{i}"))
    for j in range(n - 1):
        out.update(block(f"extra_heads.{j}"))
    return out


def reference_logits(W, p, tokens):
    """Llama-2's reference forward with the release's heads: trunk layers[:-1], heads [layers[-1], *extra_heads];
    each of the n_kv_heads key/value heads serves n_heads / n_kv_heads query heads."""
    d, nh, n = p["dim"], p["n_heads"], p["n_future_tokens"]
    nkv, hd, T = p.get("n_kv_heads", nh), d // nh, tokens.shape[1]
    freqs = 1.0 / (p["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd))
    cis = torch.polar(torch.ones(T, hd // 2), torch.outer(torch.arange(T).float(), freqs))  # (T, hd/2)

    def norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + p["norm_eps"]) * w

    def rotary(x):  # (B, T, nh, hd): interleaved pairs as complex numbers
        xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], hd // 2, 2))
        return torch.view_as_real(xc * cis[None, :, None]).flatten(3)

    def layer(x, pre):
        B = x.shape[0]
        h = norm(x, W[f"{pre}.attention_norm.weight"])
        q, k, v = (h @ W[f"{pre}.attention.w{c}.weight"].t() for c in "qkv")
        q, k, v = rotary(q.view(B, T, nh, hd)), rotary(k.view(B, T, nkv, hd)), v.view(B, T, nkv, hd)
        k, v = (t.repeat_interleave(nh // nkv, dim=2) for t in (k, v))  # (B, T, nh, hd): kv head i -> group i
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + att.transpose(1, 2).reshape(B, T, d) @ W[f"{pre}.attention.wo.weight"].t()
        h = norm(x, W[f"{pre}.ffn_norm.weight"])
        ff = F.silu(h @ W[f"{pre}.feed_forward.w1.weight"].t()) * (h @ W[f"{pre}.feed_forward.w3.weight"].t())
        return x + ff @ W[f"{pre}.feed_forward.w2.weight"].t()

    h = W["tok_embeddings.weight"][tokens]
    for i in range(p["n_layers"] - n):  # layers[:-1]
        h = layer(h, f"layers.{i}")
    heads = [f"layers.{p['n_layers'] - n}"] + [f"extra_heads.{j}" for j in range(n - 1)]
    return [norm(layer(h, pre), W["norm.weight"]) @ W["output.weight"].t() for pre in heads]


def write_release(src, params, vocab):
    torch.save(meta_weights(params, vocab), src / "consolidated.pth")
    (src / "params.json").write_text(json.dumps(params))


@pytest.fixture
def release(tmp_path):
    """The release's layout: repo/tokenizer.model (sentencepiece) and repo/7B_1T_4/{params.json, consolidated.pth}."""
    spm = pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")
    src = tmp_path / "repo" / "7B_1T_4"
    src.mkdir(parents=True)
    text = ["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i)\n", "import os, sys\n"] * 30
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_prefix=str(src.parent / "tokenizer"),
                                   vocab_size=300,
                                   model_type="bpe", bos_id=1, eos_id=2, unk_id=0, pad_id=-1, byte_fallback=True,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False,
                                   hard_vocab_limit=False, minloglevel=2)  # Llama's: bytes for the rest, no folding
    vocab = spm.SentencePieceProcessor(model_file=str(src.parent / "tokenizer.model")).get_piece_size()
    write_release(src, PARAMS, vocab)
    return src, vocab


def test_imported_heads_equal_the_reference_forward(release, tmp_path):
    src, vocab = release  # 7B_1T_4/consolidated.pth, tokenizer.model one folder up
    weights = torch.load(src / "consolidated.pth")
    assert "layers.2.ffn_norm.weight" in weights and "layers.3.ffn_norm.weight" not in weights  # 5 - 3 + 1 blocks
    cfg = import_meta(src, tmp_path / "imported")
    assert (cfg.n_layers, cfg.n_heads, cfg.n_trunk, cfg.vocab_size, cfg.hidden_dim) == (5, 3, 2, vocab,
                                                                                         _ffn_dim(PARAMS))
    model, payload = load_model(tmp_path / "imported")
    tokens = torch.randint(0, vocab, (2, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, ref = model(tokens), reference_logits(weights, PARAMS, tokens)
    for i, (a, b) in enumerate(zip(ours, ref)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=f"head {i + 1}")

    tok = Tokenizer.load(f"{payload['data_dir']}/tokenizer.json")
    text = "def add(a, b):\n    return a + b"
    assert tok.decode(tok.encode(text)) == text and tok.eod_id == 2
    prompts = [tok.encode("for i in range(")]
    greedy, _ = decode(model, prompts, 12, draft_tokens=0)
    assert decode(model, prompts, 12, draft_tokens=2)[0] == greedy  # speculative with the imported heads

    transformers = pytest.importorskip("transformers")
    out = export(tmp_path / "imported")  # the vLLM route's input: head 1 exactly in transformers, eos = </s>
    hf = transformers.AutoModelForCausalLM.from_pretrained(out["hf"], dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, ours[0], rtol=1e-4, atol=1e-4)
    assert json.loads((tmp_path / "imported" / "hf" / "config.json").read_text())["eos_token_id"] == 2


def test_a_directory_not_in_the_layout_is_one_clear_error(release, tmp_path, capsys):
    src, vocab = release
    write_release(src, {**PARAMS, "n_layers": 6}, vocab)  # `layers` one block longer than n_layers 5 gives
    (src / "params.json").write_text(json.dumps(PARAMS))
    with pytest.raises(UserError, match="unexpected block 'layers.3' for params.json n_layers 5"):
        import_meta(src, tmp_path / "out")
    write_release(src, PARAMS, vocab)
    weights = torch.load(src / "consolidated.pth")
    del weights["extra_heads.1.feed_forward.w2.weight"]
    torch.save(weights, src / "consolidated.pth")
    with pytest.raises(UserError, match="key 'extra_heads.1.feed_forward.w2.weight' is missing"):
        import_meta(src, tmp_path / "out")
    (src.parent / "tokenizer.model").rename(tmp_path / "tokenizer.model")
    with pytest.raises(UserError, match=f"tokenizer.model: not found in {src} nor {src.parent}"):
        import_meta(src, tmp_path / "out")
    (src / "params.json").unlink()
    assert cli.main(["import", "meta", str(src), "--out", str(tmp_path / "out")]) == 2
    assert "params.json: not found" in capsys.readouterr().err


def test_grouped_query_attention_and_the_llama2_file_names(release, tmp_path):
    """n_kv_heads < n_heads imports with each kv head's rows permuted on its own; consolidated.00.pth and
    tokenizer.model in the same directory (Llama-2's layout) are read too; n=1 is the standard model."""
    src, vocab = release
    (src.parent / "tokenizer.model").rename(src / "tokenizer.model")
    tokens = torch.randint(0, vocab, (2, 17), generator=torch.Generator().manual_seed(2))
    for params in ({**PARAMS, "n_kv_heads": 2}, {**PARAMS, "n_layers": 3, "n_future_tokens": 1}):
        write_release(src, params, vocab)
        (src / "consolidated.pth").rename(src / "consolidated.00.pth")
        cfg = import_meta(src, tmp_path / "imported")
        assert (cfg.n_kv_heads, cfg.n_heads, cfg.n_trunk) == (params.get("n_kv_heads", 4), params["n_future_tokens"],
                                                             params["n_layers"] - params["n_future_tokens"])
        model, _ = load_model(tmp_path / "imported")
        with torch.no_grad():
            ours, ref = model(tokens), reference_logits(torch.load(src / "consolidated.00.pth"), params, tokens)
        assert len(ours) == len(ref) == params["n_future_tokens"]
        for i, (a, b) in enumerate(zip(ours, ref)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=f"head {i + 1}")
        (src / "consolidated.00.pth").unlink()
