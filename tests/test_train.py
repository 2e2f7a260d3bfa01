import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtp import UserError, checkpoint, config
from mtp.data import tokenize
from mtp.model import ModelConfig, MTPModel
from mtp.train import head_targets, mtp_backward, train


def small_model(n, head_type="transformer", seed=0, vocab=97):
    torch.manual_seed(seed)
    return MTPModel(ModelConfig(vocab_size=vocab, dim=32, n_layers=6, n_attn_heads=2, n_future=n, head_type=head_type))


def grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("head_type", ["transformer", "linear"])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_memory_efficient_gradients_equal_naive(n, head_type):
    model = small_model(n, head_type)
    w = torch.randint(0, 97, (3, 24 + n))
    x, ys = head_targets(w, n)
    eff = mtp_backward(model, x, ys, "memory_efficient")
    g_eff = grads(model)
    model.zero_grad(set_to_none=True)
    naive = mtp_backward(model, x, ys, "naive")
    g_naive = grads(model)
    assert g_eff.keys() == g_naive.keys() == {k for k, _ in model.named_parameters()}
    for k in g_eff:
        torch.testing.assert_close(g_eff[k], g_naive[k], rtol=1e-5, atol=1e-7, msg=k)
    torch.testing.assert_close(torch.stack(eff), torch.stack(naive))


def test_n1_is_the_standard_next_token_loss():
    model = small_model(1)
    w = torch.randint(0, 97, (2, 17))
    x, ys = head_targets(w, 1)
    (loss,) = mtp_backward(model, x, ys)
    logits = model(w[:, :-1])[0]
    ref = F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten())
    torch.testing.assert_close(loss, ref)


def test_head_i_is_trained_on_targets_shifted_by_i():
    w = torch.arange(40).view(2, 20)
    x, ys = head_targets(w, 3)
    assert x.shape == (2, 17)
    for i, y in enumerate(ys):
        assert torch.equal(y, x + i + 1)  # head i+1 predicts the token i+1 ahead


def test_parameter_matching_and_counts():
    one, four = small_model(1), small_model(4)
    assert len(one.trunk) == 5 and len(four.trunk) == 2 and len(four.heads) == 4
    assert one.param_counts()["params_total"] == four.param_counts()["params_total"]
    with pytest.raises(UserError, match="layers"):
        small_model(6)


def _train_cfg(tiny_cfg, **train):
    tiny_cfg["train"].update(train)
    return config.validate(tiny_cfg)


def test_training_reduces_validation_loss_and_resume_is_bit_exact(tiny_cfg, tmp_path):
    cfg = _train_cfg(tiny_cfg, max_steps=20, checkpoint_every=10, eval_every=10)
    tokenize(cfg, "code")
    full = config.find_model(cfg, "code", "micro", 2)
    m = train(cfg, full, progress=False)
    first, last = m["val_history"]["val_loss_head_1"][0], m["val_history"]["val_loss_head_1"][-1]
    assert last < first
    assert m["val_loss_head_1"] < np.log(m["params_total"] and cfg and 512)  # below uniform over the vocab

    # Interrupted run: stop after the step-10 checkpoint, then resume to 20.
    cut = dict(full, dir=str(tmp_path / "cut"))
    train(config.validate({**cfg, "train": {**cfg["train"], "max_steps": 20}}), cut, progress=False)
    ck = sorted((tmp_path / "cut" / "ckpt").glob("step-*.pt"))
    for p in ck:
        if "0000020" in p.name:
            p.unlink()
            p.with_suffix(".json").unlink()
    (tmp_path / "cut" / "model.pt").unlink()
    train(cfg, cut, progress=False)
    a, _ = checkpoint.load_model(full["dir"])
    b, _ = checkpoint.load_model(cut["dir"])
    for (k, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), k


def test_corrupt_checkpoint_is_skipped_on_resume(tiny_cfg):
    cfg = _train_cfg(tiny_cfg, max_steps=10, checkpoint_every=5, eval_every=10)
    tokenize(cfg, "code")
    entry = config.find_model(cfg, "code", "micro", 1)
    train(cfg, entry, progress=False)
    newest = sorted((__import__("pathlib").Path(entry["dir"]) / "ckpt").glob("step-*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # cut short, as by a crash mid-write
    assert not checkpoint.is_valid(newest)
    with pytest.raises(UserError, match="corrupt"):
        checkpoint.load(newest)


def _torchrun(cfg, tmp_path, name, procs=2, **train_over):
    """Train code/micro-n2 under torchrun with `procs` gloo processes, in results folder `name`."""
    import shutil
    import yaml
    run_cfg = dict(cfg, results=str(tmp_path / name), train={**cfg["train"], **train_over})
    if not (tmp_path / name / "data").exists():
        shutil.copytree(tmp_path / "results" / "data", tmp_path / name / "data")
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(run_cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
                          "-m", "mtp.cli", "train", "--config", str(tmp_path / f"{name}.yaml"), "--dataset", "code",
                          "--size", "micro", "--n-heads", "2", "--no-progress"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp_path / name / "models" / "code" / "micro-n2"


def assert_same_weights(dir_a, dir_b, exact=False):
    a, _ = checkpoint.load_model(dir_a)
    b, _ = checkpoint.load_model(dir_b)
    for (k, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        if exact:
            assert torch.equal(p, q), k
        else:
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=k)


@pytest.fixture
def single_run(tiny_cfg):
    """code/micro-n2 trained in one process: 4 steps of batch 4 x grad_accum 2."""
    cfg = _train_cfg(tiny_cfg, max_steps=4, eval_every=4, checkpoint_every=2, batch_size=4, grad_accum=2)
    tokenize(cfg, "code")
    entry = config.find_model(cfg, "code", "micro", 2)
    train(cfg, entry, progress=False)
    return cfg, entry["dir"]


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_gloo_processes_match_single_process(single_run, tmp_path, parallel):
    """2 processes x batch 4 == 1 process x batch 4 x grad_accum 2 (same global batch), DDP and FSDP2."""
    cfg, single = single_run
    two = _torchrun(cfg, tmp_path, parallel, grad_accum=1, parallel=parallel)
    assert_same_weights(single, two)


def test_resume_on_another_number_of_processes(single_run, tmp_path):
    """Checkpoint written by 2 FSDP processes at step 2, resumed by 1 process to step 4."""
    cfg, single = single_run
    two = _torchrun(cfg, tmp_path, "switch", grad_accum=1, parallel="fsdp", max_steps=2)
    (two / "model.pt").unlink()  # the step-2 end of the short run; resume must continue from its checkpoint
    cfg4 = dict(cfg, results=str(tmp_path / "switch"))
    m = train(config.validate(cfg4), config.find_model(config.validate(cfg4), "code", "micro", 2), progress=False)
    assert m["steps"] == 4
    assert_same_weights(single, two)


def test_activation_checkpointing_gives_the_same_gradients():
    model = small_model(2)
    w = torch.randint(0, 97, (2, 20))
    x, ys = head_targets(w, 2)
    mtp_backward(model, x, ys)
    plain = grads(model)
    model.zero_grad(set_to_none=True)
    model.activation_checkpointing = True
    mtp_backward(model, x, ys)
    for k, g in grads(model).items():
        torch.testing.assert_close(g, plain[k], msg=k)


def test_nan_loss_stops_with_a_clear_message(tiny_cfg):
    cfg = _train_cfg(tiny_cfg, max_steps=5, lr=1e30, warmup_steps=0, grad_clip=1e30)
    tokenize(cfg, "code")
    with pytest.raises(UserError, match="loss became"):
        train(cfg, config.find_model(cfg, "code", "micro", 1), progress=False)
