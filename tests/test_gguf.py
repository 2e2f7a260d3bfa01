"""init_from: gguf:<file> and tokenizer kind gguf (mtp/formats/gguf.py): a tiny Llama GGUF (grouped-query attention,
tied embeddings, F32, byte-level BPE with eos <|im_end|>) is written here (tests/gguf_fixture.py). Its HF directory
read as our model gives transformers' logits on the GGUF itself; heads added to it through tokenize/train keep its
greedy output token for token and decode losslessly; <package>/<file> resolves inside an installed package; a sweep
on data in other tokens is refused; the HF directory is written once per GGUF content."""
import shutil

import pytest
import torch

from mtp import UserError, checkpoint, config
from mtp.formats import gguf as gguf_llama, hf_llama
from mtp.data import tokenize
from mtp.decoding.engine import decode
from mtp.formats.export import hf_name
from mtp.io import read_json, sha256_file
from mtp.nn.model import MTPModel
from mtp.tokenizer import Tokenizer
from mtp.stages.train import train
from mtp.training import init_from

pytest.importorskip("gguf")
pytest.importorskip("accelerate")
transformers = pytest.importorskip("transformers")
from gguf_fixture import EOS_ID, write_tiny_llama_gguf  # noqa: E402 - needs gguf
from test_init_hf import hf_greedy  # noqa: E402 - transformers' greedy, as our decode returns it

SHAPE = {"dim": 64, "n_layers": 3, "n_attn_heads": 4, "n_kv_heads": 2}  # GQA; 3 layers: a trunk of 1 for n=2


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    """(path of tiny.gguf, {HF name: tensor} it holds). scale 0.2: peaked logits, no near-tie argmaxes."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    tensors = write_tiny_llama_gguf(path, dim=SHAPE["dim"], n_layers=SHAPE["n_layers"], n_heads=SHAPE["n_attn_heads"],
                                    n_kv_heads=SHAPE["n_kv_heads"], tied=True, scale=0.2)
    return path, tensors


def load_gguf(path):
    """The oracle: transformers reading the GGUF file itself."""
    return transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                             dtype=torch.float32).eval()


def gguf_cfg(tiny_cfg, path, n=2):
    raw = {**tiny_cfg, "model_presets": {"tiny": SHAPE},
           "datasets": {"code": {"source": {"kind": "stdlib", "max_files": 20}, "val_fraction": 0.2,
                                 "tokenizer": {"kind": "gguf", "path": str(path)}}},
           "sweeps": [{"dataset": "code", "sizes": ["tiny"], "n_heads": [n], "init_from": f"gguf:{path}",
                       "train": {"freeze": "trunk", "lr": 0.01}}],
           "train": {**tiny_cfg["train"], "seq_len": 32, "batch_size": 4, "max_steps": 6, "warmup_steps": 2,
                     "eval_every": 3, "checkpoint_every": 3}}
    return config.validate(raw)


def test_gguf_read_as_our_model_gives_transformers_logits(gguf_file, tmp_path):
    path, tensors = gguf_file
    src = gguf_llama.hf_dir(path, results=tmp_path / "results")
    assert src.parent == tmp_path / "results" / "sources"
    assert "quantization_config" not in read_json(src / "config.json")  # a plain float Llama directory
    cfg, state = hf_llama.read(src)
    assert (cfg.n_kv_heads, cfg.n_attn_heads, cfg.tie_embeddings, cfg.n_heads) == (2, 4, True, 1)
    model = MTPModel(cfg).eval()
    model.load_state_dict(state, strict=True)
    assert model.lm_head.weight is model.tok_emb.weight
    for k, v in model.state_dict().items():  # q/k un-permuted: the fixture's HF tensors bit for bit
        name = "model.embed_tokens.weight" if k == "lm_head.weight" else hf_name(k, cfg.n_trunk)
        assert torch.equal(v, tensors[name]), k
    x = torch.tensor([[1, 40, 77, 3, 250, 101, 12, 299, 64, 2, 5]])
    with torch.no_grad():
        torch.testing.assert_close(model(x, heads=[0])[0], load_gguf(path)(x).logits, rtol=1e-4, atol=1e-4)


def test_heads_added_to_a_gguf_model_keep_its_greedy_output(tiny_cfg, gguf_file):
    path, tensors = gguf_file
    cfg = gguf_cfg(tiny_cfg, path)
    meta = tokenize(cfg, "code")
    assert meta["eod_id"] == EOS_ID and meta["tokenizer"] == "gguf"  # documents end with the GGUF's eos
    assert meta["vocab_size"] == 300
    entry = config.find_model(cfg, "code", "tiny-init", 2)
    train(cfg, entry, progress=False)
    model, payload = checkpoint.load_model(entry.dir)
    assert (model.cfg.n_heads, model.cfg.n_kv_heads) == (2, 2)
    tok = Tokenizer.load(f"{payload['data_dir']}/tokenizer.json")
    assert tok.eod_id == EOS_ID
    hf = load_gguf(path)

    x = torch.tensor([tok.encode("def main(argv):\n    return sorted(argv)\n")])
    with torch.no_grad():
        torch.testing.assert_close(model(x, heads=[0])[0], hf(x).logits, rtol=1e-4, atol=1e-4)
    prompts = [tok.encode("import os\n"), tok.encode("def main("), tok.encode("class A:\n    ")]
    greedy, _ = decode(model, prompts, 20, EOS_ID, draft_tokens=0)
    assert greedy == [hf_greedy(hf, p, 20, EOS_ID) for p in prompts]  # token for token
    assert any(len(g) > 3 for g in greedy)  # not a trivial immediate eos
    assert decode(model, prompts, 20, EOS_ID, draft_tokens=1)[0] == greedy  # lossless with the new head

    state = model.state_dict()
    frozen = [k for k in state if k.startswith(init_from.FROZEN)]
    assert len(frozen) == len(state) - 9  # all but head 2's block
    assert model.lm_head.weight is model.tok_emb.weight
    for k in frozen:  # the GGUF's tensors bit for bit
        name = "model.embed_tokens.weight" if k == "lm_head.weight" else hf_name(k, model.cfg.n_trunk)
        assert torch.equal(state[k], tensors[name]), k
    assert not torch.equal(state["heads.1.mlp.w2.weight"], state["heads.0.mlp.w2.weight"])  # head 2 trained


def test_resolve_a_path_or_a_file_in_an_installed_package(gguf_file, tmp_path, monkeypatch):
    path, _ = gguf_file
    assert gguf_llama.resolve(str(path)) == path.resolve()
    monkeypatch.chdir(path.parent)
    assert gguf_llama.resolve("tiny.gguf") == path.resolve()  # relative to the working directory
    pkg = tmp_path / "site" / "tiny_gguf_models"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(path, pkg / "sub" / "model.gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert gguf_llama.resolve("tiny_gguf_models/sub/model.gguf") == (pkg / "sub" / "model.gguf").resolve()
    for spec, why in ((str(tmp_path / "missing.gguf"), "GGUF file not found"),
                      ("tiny_gguf_models/sub/other.gguf", "not found in the installed package 'tiny_gguf_models'"),
                      ("no_such_pkg_xyz/model.gguf", "no installed package 'no_such_pkg_xyz'")):
        with pytest.raises(UserError, match=why) as e:
            gguf_llama.resolve(spec)
        assert str(e.value).startswith(spec + ":") and "\n" not in str(e.value), str(e.value)


def test_the_config_wants_the_gguf_tokenizer(tiny_cfg, gguf_file):
    path, _ = gguf_file
    good = gguf_cfg(tiny_cfg, path)
    same = {"kind": "gguf", "path": f"{path.parent}/./{path.name}"}  # the same file, spelled otherwise
    config.validate({**good, "datasets": {"code": {**good["datasets"]["code"], "tokenizer": same}}})
    for tk in ({"kind": "byte"}, {"kind": "gguf", "path": str(path.parent / "other.gguf")},
               {"kind": "hf", "path": str(path)}):
        raw = {**good, "datasets": {"code": {**good["datasets"]["code"], "tokenizer": tk}}}
        with pytest.raises(UserError, match=r"sweeps.0.init_from': gguf:.* tokenizer: \{kind: gguf, path: ") as e:
            config.validate(raw)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_the_hf_directory_is_written_once_per_gguf_content(gguf_file, tmp_path, monkeypatch):
    path, _ = gguf_file
    first = gguf_llama.hf_dir(path, tmp_path / "results")
    assert first.name == f"tiny-{sha256_file(path)[:12]}" and (first / "tokenizer.json").exists()

    def boom(*a):
        raise AssertionError("write_hf_dir called again")
    monkeypatch.setattr(gguf_llama, "write_hf_dir", boom)
    assert gguf_llama.hf_dir(str(path), tmp_path / "results") == first  # cached: not re-read
    with pytest.raises(AssertionError, match="called again"):  # another results folder: written there
        gguf_llama.hf_dir(path, tmp_path / "elsewhere")
    changed = tmp_path / "new" / "tiny.gguf"
    changed.parent.mkdir()
    write_tiny_llama_gguf(changed, n_layers=1, seed=1)
    with pytest.raises(AssertionError, match="called again"):  # another content: another directory
        gguf_llama.hf_dir(changed, tmp_path / "results")

