"""Export: transformers loads <model>/hf as LlamaForCausalLM with head 1's logits exactly;
the extra heads are Llama decoder layers under model.extra_heads; config, tokenizer, drafter."""
import json
from types import SimpleNamespace

import pytest
import torch
import yaml

from mtp import UserError
from mtp.checkpoint import save_model
from mtp.formats.export import export, hf_name
from mtp.nn.model import ModelConfig, MTPModel
from mtp.tokenizer import EOD, Tokenizer, byte_tokenizer

transformers = pytest.importorskip("transformers")


def make_model(root, n=4, head_type="transformer", seed=0, model_dir=None):
    """A random-weight model (debug-like shape, vocab 300) saved as a checkpoint beside a byte tokenizer."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    byte_tokenizer().save(str(data / "tokenizer.json"))
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=300, dim=32, n_layers=6, n_attn_heads=2, n_heads=n, head_type=head_type)
    model = MTPModel(cfg).eval()
    model_dir = model_dir or root / "model"
    save_model(model_dir, model, extra={"dataset": "t", "size": "debug", "n": n, "data_dir": str(data),
                                        "train_run_id": "r1"})
    return model, model_dir


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model, model_dir = make_model(root)
    return model, model_dir, export(model_dir)


def load_hf(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_transformers_loads_head1_exactly(exported):
    model, model_dir, out = exported
    hf = load_hf(out["hf"])
    assert type(hf).__name__ == "LlamaForCausalLM"
    idx = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(idx, heads=[0])[0], hf(idx).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)


def test_extra_heads_are_llama_layers(exported):
    """Head j (j >= 2) = the HF model with layer L-n replaced by model.extra_heads.{j-2}."""
    from safetensors.torch import load_file
    model, model_dir, out = exported
    weights = load_file(f"{out['hf']}/model.safetensors")
    n_trunk = model.cfg.n_trunk
    hf = load_hf(out["hf"])
    idx = torch.randint(0, 300, (1, 30), generator=torch.Generator().manual_seed(1))
    for j in range(2, model.cfg.n_heads + 1):
        prefix = f"model.extra_heads.{j - 2}."
        swapped = {k: v for k, v in weights.items() if not k.startswith("model.extra_heads.")}
        swapped.update({f"model.layers.{n_trunk}." + k[len(prefix):]: v for k, v in weights.items()
                        if k.startswith(prefix)})
        hf.load_state_dict(swapped, strict=True)
        with torch.no_grad():
            torch.testing.assert_close(hf(idx).logits, model(idx, heads=[j - 1])[0], rtol=1e-5, atol=1e-5)


def test_names_cover_every_parameter(exported):
    model, _, _ = exported
    names = [hf_name(k, model.cfg.n_trunk) for k in model.state_dict()]
    assert len(set(names)) == len(names)
    assert "model.layers.2.self_attn.q_proj.weight" in names  # head 1 = layer L-n = 2
    assert "model.extra_heads.2.mlp.down_proj.weight" in names  # head 4
    assert not any(f"model.layers.{model.cfg.n_trunk + 1}." in k for k in names)


def test_config_tokenizer_and_drafter(exported):
    model, model_dir, out = exported
    conf = json.loads((model_dir / "hf" / "config.json").read_text())
    assert conf["architectures"] == ["MTPLlamaForCausalLM"] and conf["n_future_tokens"] == 4
    assert conf["num_hidden_layers"] == model.cfg.n_trunk + 1 and conf["mtp_source"]["train_run_id"] == "r1"
    tok = transformers.AutoTokenizer.from_pretrained(out["hf"])
    ours = Tokenizer.load(model_dir.parent / "data" / "tokenizer.json")
    assert tok.eos_token == EOD and tok.eos_token_id == ours.eod_id == conf["eos_token_id"]
    assert tok("def f(x):\n\treturn 'é'", add_special_tokens=False)["input_ids"] == ours.encode("def f(x):\n\treturn 'é'")
    draft = json.loads((model_dir / "hf-drafter" / "config.json").read_text())
    assert draft["model_type"] == "medusa" and draft["architectures"] == ["MTPDrafter"]
    assert draft["hidden_size"] == 4 * 32 and draft["head_hidden_size"] == 32 and draft["num_heads"] == 3
    from safetensors.torch import load_file
    assert torch.equal(load_file(f"{out['drafter']}/model.safetensors")["lm_head.weight"], model.lm_head.weight)


def test_n1_is_a_plain_llama_without_drafter(tmp_path):
    model, model_dir = make_model(tmp_path, n=1)
    out = export(model_dir)
    assert out["drafter"] is None and not (model_dir / "hf-drafter").exists()
    conf = json.loads((model_dir / "hf" / "config.json").read_text())
    assert conf["architectures"] == ["LlamaForCausalLM"] and conf["n_future_tokens"] == 1
    idx = torch.randint(0, 300, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(load_hf(out["hf"])(idx).logits, model(idx)[0], rtol=1e-5, atol=1e-5)


def test_recursive_heads_export_in_mimos_layout(tmp_path):
    """Recursive heads (one module at every depth) export as XiaomiMiMo's checkpoint, which vLLM serves with method
    mtp: transformers loads it as Qwen2 (zero attention biases) with head 1's logits exactly; the module is
    model.mtp_layers.0 once; no drafter folder."""
    from safetensors.torch import load_file
    model, model_dir = make_model(tmp_path, n=3, head_type="recursive")
    out = export(model_dir)
    assert out["drafter"] is None and not (model_dir / "hf-drafter").exists()
    conf = json.loads((model_dir / "hf" / "config.json").read_text())
    assert conf["architectures"] == ["MiMoForCausalLM"] and conf["num_nextn_predict_layers"] == 1
    assert conf["num_hidden_layers"] == model.cfg.n_trunk + 1
    hf = load_hf(out["hf"])
    assert type(hf).__name__ == "Qwen2ForCausalLM"
    idx = torch.randint(0, 300, (2, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx, heads=[0])[0], rtol=1e-5, atol=1e-5)
    w = load_file(f"{out['hf']}/model.safetensors")
    mtp_keys = {k for k in w if k.startswith("model.mtp_layers.")}
    assert {k.split(".")[2] for k in mtp_keys} == {"0"} and len(mtp_keys) == 16  # MiMo's 16 tensors of a layer
    m = model.heads[1]
    assert torch.equal(w["model.mtp_layers.0.input_proj.weight"], m.proj.weight)
    assert torch.equal(w["model.mtp_layers.0.final_layernorm.weight"], m.norm.weight)
    assert torch.equal(w["model.mtp_layers.0.self_attn.q_proj.weight"], m.block.attn.wq.weight)
    assert not w["model.mtp_layers.0.self_attn.q_proj.bias"].any()


@pytest.mark.parametrize("head_type, why", [("linear", "export supports transformer heads only"),
                                            ("sequential", "first MTP layer for every draft position")])
def test_heads_vllm_cannot_serve_are_refused_with_the_reason(tmp_path, head_type, why):
    _, model_dir = make_model(tmp_path, n=2, head_type=head_type)
    with pytest.raises(UserError, match=why):
        export(model_dir)
    assert not (model_dir / "hf").exists()


def test_reexport_replaces_the_folder(tmp_path):
    model, model_dir = make_model(tmp_path, n=2)
    export(model_dir)
    (model_dir / "hf" / "stale.txt").write_text("x")
    export(model_dir)
    assert not (model_dir / "hf" / "stale.txt").exists()
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_cli_stage(tmp_path):
    from mtp import config
    from mtp.stages import export as E
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "results": str(tmp_path / "results"), "train": {},
        "model_presets": {"toy": {"dim": 32, "n_layers": 6, "n_attn_heads": 2}},
        "datasets": {"toy": {"source": {"kind": "stdlib"}}},
        "sweeps": [{"dataset": "toy", "sizes": ["toy"], "n_heads": [2]}]}))
    make_model(tmp_path, n=2, model_dir=config.find_model(config.load(cfg_path), "toy", "toy", 2).dir)
    E.run(SimpleNamespace(config=str(cfg_path), model=None, dataset="toy", size="toy", n_heads=2))
    assert (tmp_path / "results/models/toy/toy-n2/hf/model.safetensors").exists()
    assert (tmp_path / "results/models/toy/toy-n2/hf-drafter/config.json").exists()


def test_medusa_heads_export_in_vllms_medusa_format(tmp_path):
    """Medusa heads: hf/ is the plain Llama of trunk + head 1 (head 1's logits exactly in transformers); hf-drafter/
    is vLLM's Medusa checkpoint, whose blocks on transformers' final-normed last hidden state, through the shared
    lm_head, give each medusa head's logits exactly."""
    import torch.nn.functional as F
    from safetensors.torch import load_file
    model, model_dir = make_model(tmp_path, n=3, head_type="medusa")
    out = export(model_dir)
    conf = json.loads((model_dir / "hf" / "config.json").read_text())
    assert conf["architectures"] == ["LlamaForCausalLM"] and conf["num_hidden_layers"] == 6
    drafter = json.loads((model_dir / "hf-drafter" / "config.json").read_text())
    assert drafter["architectures"] == ["MedusaModel"] and drafter["num_heads"] == 2 and drafter["original_lm_head"]
    w = load_file(f"{out['drafter']}/model.safetensors")
    assert set(w) == {"blocks.0.layers.0.weight", "blocks.1.layers.0.weight", "lm_head.weight"}
    hf = load_hf(out["hf"])
    idx = torch.randint(0, 300, (2, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model(idx)
        torch.testing.assert_close(hf(idx).logits, ours[0], rtol=1e-5, atol=1e-5)
        x = hf.model(idx).last_hidden_state  # after the final norm, what vLLM hands the Medusa drafter
        for j in (1, 2):
            y = x + F.silu(x @ w[f"blocks.{j - 1}.layers.0.weight"].t())
            torch.testing.assert_close(y @ w["lm_head.weight"].t(), ours[j], rtol=1e-4, atol=1e-4)
