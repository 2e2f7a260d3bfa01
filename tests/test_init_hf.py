"""init_from: hf:<dir>: heads added to a Hugging Face Llama model. A small LlamaForCausalLM is made and saved here
with `transformers` beside a BPE tokenizer trained here (its eos named otherwise than ours); the data is tokenized
with that tokenizer, heads are added (n=2, train.freeze: trunk) and trained a few steps. Then our greedy output
equals transformers' generate token for token, self-speculative decoding is lossless, the frozen parts are the HF
weights bit for bit and the new head trained. What our model cannot represent is refused in one line."""
import json
import shutil
import subprocess

import pytest
import torch
import yaml

from conftest import BIN
from mtp import UserError, checkpoint, config
from mtp.formats import hf_llama
from mtp.data import stdlib_files, tokenize
from mtp.decoding.engine import decode
from mtp.formats.export import export, hf_name
from mtp.io import read_json
from mtp.tokenizer import Tokenizer, from_model_dir, train_bpe
from mtp.stages.train import train
from mtp.training import init_from

transformers = pytest.importorskip("transformers")

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
SHAPE = {"dim": 64, "n_layers": 3, "n_attn_heads": 4, "n_kv_heads": 2}  # grouped-query attention, as in Llama 3


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A Llama directory as save_pretrained writes it: config.json (grouped-query attention, tied embeddings,
    intermediate_size 96, not our rule's 192), model.safetensors, tokenizer.json + tokenizer_config.json (eos <|end_of_text|>)."""
    src = tmp_path_factory.mktemp("hf") / "tiny-llama"
    texts = [open(f, encoding="utf-8").read() for f in stdlib_files(8)]
    tok = train_bpe(iter(texts), 384)  # ours adds <|eod|> (id 0): the eos must come from the directory, not it
    tok.add_special_tokens([BOS, EOS])
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS).save_pretrained(src)
    conf = transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=SHAPE["dim"], intermediate_size=96,
        num_hidden_layers=SHAPE["n_layers"], num_attention_heads=SHAPE["n_attn_heads"], num_key_value_heads=SHAPE["n_kv_heads"],
        max_position_embeddings=256,
        rms_norm_eps=1e-5, tie_word_embeddings=True, initializer_range=0.2,
        bos_token_id=tok.token_to_id(BOS), eos_token_id=tok.token_to_id(EOS))
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(conf).save_pretrained(src)
    return src


def load_hf(src):
    return transformers.LlamaForCausalLM.from_pretrained(src, dtype=torch.float32).eval()


def hf_cfg(tiny_cfg, src, n=2):
    raw = {**tiny_cfg, "model_presets": {"llama3": SHAPE},
           "datasets": {"llama": {"source": {"kind": "stdlib", "max_files": 20}, "val_fraction": 0.2,
                                  "tokenizer": {"kind": "hf", "path": str(src)}}},
           "sweeps": [{"dataset": "llama", "sizes": ["llama3"], "n_heads": [n], "init_from": f"hf:{src}",
                       "train": {"freeze": "trunk", "lr": 0.01}}],
           "train": {**tiny_cfg["train"], "seq_len": 32, "batch_size": 4, "max_steps": 8, "warmup_steps": 2,
                     "eval_every": 4, "checkpoint_every": 4}}
    return config.validate(raw)


def hf_greedy(hf, prompt, max_new_tokens, eos):
    """transformers' greedy generate, its new tokens up to (not including) eos, as our decode returns them."""
    x = torch.tensor([prompt])
    with torch.no_grad():
        out = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens, do_sample=False,
                          pad_token_id=eos)[0, len(prompt):].tolist()
    return out[:out.index(eos)] if eos in out else out


def test_heads_added_to_a_hf_llama_keep_its_greedy_output(tiny_cfg, llama_dir):
    cfg = hf_cfg(tiny_cfg, llama_dir)
    eos = read_json(llama_dir / "config.json")["eos_token_id"]
    meta = tokenize(cfg, "llama")
    assert meta["eod_id"] == eos and meta["tokenizer"] == "hf"  # documents end with the model's own eos
    entry = config.find_model(cfg, "llama", "llama3-init", 2)
    train(cfg, entry, progress=False)
    model, payload = checkpoint.load_model(entry.dir)
    tok = Tokenizer.load(f"{payload['data_dir']}/tokenizer.json")
    assert tok.eod_id == eos  # read back from the dataset's meta.json, not <|eod|>
    hf = load_hf(llama_dir)

    x = torch.tensor([tok.encode("def main(argv):\n    return sorted(argv)\n")])
    with torch.no_grad():
        torch.testing.assert_close(model(x, heads=[0])[0], hf(x).logits, rtol=1e-4, atol=1e-4)
    prompts = [tok.encode("import os\n"), tok.encode("def main("), tok.encode("class A:\n    ")]
    greedy, _ = decode(model, prompts, 24, eos, draft_tokens=0)
    assert greedy == [hf_greedy(hf, p, 24, eos) for p in prompts]  # (a) token for token
    assert decode(model, prompts, 24, eos, draft_tokens=1)[0] == greedy  # (b) lossless with the new head

    state, hf_state = model.state_dict(), hf.state_dict()  # (c) frozen: the HF weights bit for bit
    frozen = [k for k in state if k.startswith(init_from.FROZEN)]
    assert len(frozen) == len(state) - 9  # all but head 2's block
    assert model.lm_head.weight is model.tok_emb.weight  # tie_word_embeddings: still one tensor
    for k in frozen:
        assert torch.equal(state[k], hf_state[hf_name(k, model.cfg.n_trunk)]), k
    assert not torch.equal(state["heads.1.mlp.w2.weight"], state["heads.0.mlp.w2.weight"])  # head 2 trained

    out = export(entry.dir)  # the vLLM route's input: head 1 in transformers again, eos the model's
    assert read_json(f"{out['hf']}/config.json")["eos_token_id"] == eos
    with torch.no_grad():
        torch.testing.assert_close(load_hf(out["hf"])(x).logits, hf(x).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("edit, match", [
    ({"num_key_value_heads": 3}, "n_kv_heads 3 must divide n_attn_heads 4"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling is 'linear'"),
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}}, "rope_parameters.rope_type is 'llama3'"),
    ({"attention_bias": True}, "attention_bias is True"),
    ({"mlp_bias": True}, "mlp_bias is True"),
    ({"hidden_act": "gelu"}, "hidden_act is 'gelu'"),
    ({"head_dim": 32}, "head_dim is 32"),
    ({"model_type": "mistral"}, "model_type is 'mistral'"),
    ({"intermediate_size": None}, "key 'intermediate_size' is missing"),
])
def test_what_our_model_cannot_represent_is_refused(llama_dir, tmp_path, edit, match):
    src = shutil.copytree(llama_dir, tmp_path / "src")
    conf = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**conf, **edit}))
    with pytest.raises(UserError, match=match) as e:
        hf_llama.read(src)
    assert str(src / "config.json") in str(e.value) and "\n" not in str(e.value)


def test_missing_files_and_keys_are_one_line(llama_dir, tmp_path):
    src = shutil.copytree(llama_dir, tmp_path / "src")
    from safetensors.torch import load_file, save_file
    weights = load_file(src / "model.safetensors")
    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, src / "model.safetensors")
    with pytest.raises(UserError, match="weights key 'model.layers.1.mlp.up_proj.weight' is missing"):
        hf_llama.read(src)
    (src / "model.safetensors").unlink()
    with pytest.raises(UserError, match="no model.safetensors"):
        hf_llama.read(src)
    (src / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="tokenizer.json: not found"):
        from_model_dir(src)


def test_the_config_names_the_tokenizer_and_the_shape(tiny_cfg, llama_dir):
    """A hf: sweep on data in other tokens is refused when the config is read; a size preset of another shape when
    training starts (parameter counts and the report read the preset)."""
    raw = {**hf_cfg(tiny_cfg, llama_dir)}
    raw["datasets"] = {"llama": {**raw["datasets"]["llama"], "tokenizer": {"kind": "byte"}}}
    with pytest.raises(UserError, match=r"sweeps.0.init_from': .* tokenizer: \{kind: hf, path: "):
        config.validate(raw)
    cfg = hf_cfg(tiny_cfg, llama_dir)
    cfg["model_presets"]["llama3"] = {**SHAPE, "dim": 32}
    entry = config.find_model(cfg, "llama", "llama3-init", 2)
    with pytest.raises(UserError, match=r"size 'llama3' is not the source's shape; .*dim: 64, n_layers: 3"):
        init_from.config_from(entry, init_from.read(entry), read_json(llama_dir / "config.json")["vocab_size"],
                              cfg["model_presets"])


def test_dag_takes_the_source_files_as_inputs(workdir, llama_dir):
    """snakemake -n: train_model's inputs hold the source's config.json and weights, tokenize_corpus's its
    tokenizer files (a changed source retrains, a changed tokenizer re-tokenizes)."""
    raw = {"results": "results", "model_presets": {"llama3": SHAPE},
           "datasets": {"llama": {"source": {"kind": "stdlib", "max_files": 20},
                                  "tokenizer": {"kind": "hf", "path": str(llama_dir)}}},
           "sweeps": [{"dataset": "llama", "sizes": ["llama3"], "n_heads": [2], "init_from": f"hf:{llama_dir}"}],
           "decode": {"enabled": False}, "vllm": {"enabled": False},
           "eval": {"code": {"enabled": False}, "synthetic": {"enabled": False}}}
    (workdir / "hf.yaml").write_text(yaml.safe_dump(raw))
    out = subprocess.run([str(BIN / "snakemake"), "results/models/llama/llama3-init-n2/model.pt", "-n", "--cores", "1",
                          "--configfile", "hf.yaml"], cwd=workdir, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    inputs = {rule: log.split(f"rule {rule}:")[1].split("output:")[0] for rule in ("train_model", "tokenize_corpus")}
    for rule, files in (("train_model", ("config.json", "model.safetensors")),
                        ("tokenize_corpus", ("tokenizer.json", "tokenizer_config.json"))):
        for f in files:
            assert str(llama_dir / f) in inputs[rule], (rule, f)
