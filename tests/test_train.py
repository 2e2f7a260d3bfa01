import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtp import UserError, checkpoint, config
from mtp.data import tokenize
from mtp.nn.model import Block, ModelConfig, MTPModel
from mtp.stages.train import train
from mtp.training.step import head_targets, mtp_backward


def small_model(n, head_type="transformer", seed=0, vocab=97, n_kv_heads=None):
    torch.manual_seed(seed)
    return MTPModel(ModelConfig(vocab_size=vocab, dim=32, n_layers=6, n_attn_heads=4 if n_kv_heads else 2, n_heads=n,
                                head_type=head_type, n_kv_heads=n_kv_heads))


def grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("head_type", ["transformer", "linear", "medusa", "sequential", "recursive"])
@pytest.mark.parametrize("n, n_kv_heads", [(1, None), (2, None), (4, None), (4, 1)])  # (4, 1): grouped-query
def test_memory_efficient_gradients_equal_naive(n, n_kv_heads, head_type):
    model = small_model(n, head_type, n_kv_heads=n_kv_heads)
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


def test_every_head_type_has_the_transformer_models_parameters():
    """Parameter matching across head types (mtp.head_types.matched_hidden): at every preset up to 1.3B and every n
    up to 4, each head type's model has its transformer model's parameters to within one SwiGLU width unit of all its
    blocks (3*d*L: < 0.1% above the debug size), the count computed without building the model equals the built
    model's, and every type keeps L blocks in all."""
    from mtp.head_types import HEAD_TYPES, num_params
    from mtp.presets import PRESETS
    for name, spec in PRESETS.items():
        for n in range(1, min(4, spec["n_layers"] - 1) + 1):
            ref = num_params(256, spec["dim"], spec["n_layers"], n, "transformer")
            for t in HEAD_TYPES:
                got = num_params(256, spec["dim"], spec["n_layers"], n, t)
                assert abs(got - ref) <= 1.5 * 3 * spec["dim"] * spec["n_layers"], (name, n, t, got, ref)
                assert name == "debug" or abs(got - ref) / ref < 1e-3, (name, n, t)  # debug: 0.2%
    for t in HEAD_TYPES:
        for n, kv in ((1, None), (2, None), (4, None), (4, 2)):  # kv: grouped-query attention
            model = small_model(n, t, n_kv_heads=kv)
            blocks = sum(isinstance(m, Block) for m in model.modules())
            assert model.cfg.num_params == sum(p.numel() for p in model.parameters()) and blocks == 6, (t, n, kv)
    assert small_model(4, "linear").cfg.hidden_dim < small_model(4, "transformer").cfg.hidden_dim


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
    cut = dataclasses.replace(full, results=str(tmp_path / "cut"))  # the same model in another results folder
    train(config.validate({**cfg, "train": {**cfg["train"], "max_steps": 20}}), cut, progress=False)
    ck = sorted((Path(cut.dir) / "ckpt").glob("step-*.pt"))
    for p in ck:
        if "0000020" in p.name:
            p.unlink()
            p.with_suffix(".json").unlink()
    (Path(cut.dir) / "model.pt").unlink()
    train(cfg, cut, progress=False)
    a, _ = checkpoint.load_model(full.dir)
    b, _ = checkpoint.load_model(cut.dir)
    for (k, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), k


def test_seeds_are_a_sweep_axis(tiny_cfg, tmp_path):
    """A sweep's seeds give one model per seed (<size>-s<seed>-n<n>), trained from that seed (initialisation and
    data order): two seeds differ, the same seed again is bit-exact; the MLflow runs are tagged with the seed."""
    import mlflow
    tiny_cfg["sweeps"] = [{"dataset": "code", "sizes": ["micro"], "n_heads": [2], "seeds": [3, 4]}]
    cfg = _train_cfg(tiny_cfg, max_steps=4, checkpoint_every=4, eval_every=4)
    models = config.models(cfg)
    assert [(m.slot, m.seed, m.family) for m in models] == [("micro-s3", 3, "micro"), ("micro-s4", 4, "micro")]
    assert [Path(m.dir).name for m in models] == ["micro-s3-n2", "micro-s4-n2"]
    tokenize(cfg, "code")
    for m in models:
        train(cfg, m, progress=False)
    again = dataclasses.replace(models[0], results=str(tmp_path / "again"))
    train(cfg, again, progress=False)
    (a, _), (b, _), (c, _) = (checkpoint.load_model(m.dir) for m in (*models, again))
    assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))
    mlflow.set_tracking_uri(cfg["tracking"]["uri"])
    runs = mlflow.search_runs(experiment_names=[cfg["tracking"]["experiment"]],
                              filter_string="tags.`mtp.stage` = 'train'")
    assert sorted(runs["tags.mtp.seed"]) == ["3", "3", "4"]


def test_corrupt_checkpoint_is_skipped_on_resume(tiny_cfg, capsys, monkeypatch):
    """The newest checkpoint cut short (a crash mid-write): the rerun resumes from the one before it,
    trains only the remaining steps and ends with the weights of an uninterrupted run, bit for bit."""
    from pathlib import Path
    from mtp.training import loop as train_mod
    cfg = _train_cfg(tiny_cfg, max_steps=10, checkpoint_every=5, eval_every=10)
    tokenize(cfg, "code")
    entry = config.find_model(cfg, "code", "micro", 1)
    train(cfg, entry, progress=False)
    ckdir = Path(entry.dir) / "ckpt"
    uninterrupted, _ = checkpoint.load_model(entry.dir)
    newest = ckdir / "step-0000010.pt"
    assert sorted(p.name for p in ckdir.glob("step-*.pt")) == ["step-0000005.pt", newest.name]
    newest.write_bytes(newest.read_bytes()[:100])  # cut short, as by a crash mid-write
    assert not checkpoint.is_valid(newest)
    with pytest.raises(UserError, match="corrupt"):
        checkpoint.load(newest)
    (Path(entry.dir) / "model.pt").unlink()  # the crashed run never got this far
    loaded, steps = [], []
    real_load, real_backward = checkpoint.load, train_mod.mtp_backward
    monkeypatch.setattr(checkpoint, "load", lambda path, *a, **kw: loaded.append(Path(path).name) or real_load(path, *a, **kw))
    monkeypatch.setattr(train_mod, "mtp_backward", lambda *a, **kw: steps.append(1) or real_backward(*a, **kw))
    capsys.readouterr()
    train(cfg, entry, progress=False)
    monkeypatch.undo()
    assert "from step-0000005.pt (step 5/10)" in capsys.readouterr().out
    assert loaded == ["step-0000005.pt"] and len(steps) == 5  # resumed at 5: only steps 6..10 ran
    assert checkpoint.is_valid(newest) and checkpoint.load(newest)["step"] == 10  # rewritten whole
    resumed, _ = checkpoint.load_model(entry.dir)
    for (k, a), (_, b) in zip(uninterrupted.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


# The train shape of `mtp bench train`, cut so that one step takes a second on CPU: the heads' logits
# (vocab 32768, as in mtp bench train) dominate what a step adds.
MEM_SHAPE = dict(dim=64, n_layers=9, n_attn_heads=2, vocab=32768, seq=128, batch=4)


def _peak_step_memory(n, mode):
    """mtp.training.bench._peak_step_memory(n, mode, MEM_SHAPE) in a fresh process, as `mtp bench train` runs each
    configuration. Started through sh, which forks it: Linux carries a process's peak RSS (ru_maxrss) over
    execve, so a child exec'd straight from this pytest process would start with pytest's peak, above
    anything one small step adds, and measure that instead."""
    code = f"import json, mtp.training.bench as b; print(json.dumps(b._peak_step_memory({n!r}, {mode!r}, {MEM_SHAPE!r})))"
    out = subprocess.run(["sh", "-c", '"$0" -c "$1"; exit $?', sys.executable, code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return int(out.stdout.strip().splitlines()[-1])


def test_memory_efficient_step_memory_stays_flat_in_n_while_naive_grows():
    """Peak memory a forward+backward step adds on CPU (mtp.training.bench's measurement, each configuration in its own
    process), n=1 against n=4. The memory-efficient step keeps one head's logits alive at a time: n=4 adds
    less than half a head's logits tensor (and under 20%) to n=1. The naive step keeps every head's logits
    (their log-softmax, for backward) alive at once: the 3 extra heads add more than 2 logits tensors."""
    mem = {(mode, n): _peak_step_memory(n, mode) for mode in ("memory_efficient", "naive") for n in (1, 4)}
    logits = MEM_SHAPE["batch"] * MEM_SHAPE["seq"] * MEM_SHAPE["vocab"] * 4  # one head's, float32
    assert min(mem.values()) > logits, mem  # the measurement sees at least one head's logits
    assert mem["memory_efficient", 4] - mem["memory_efficient", 1] < 0.5 * logits, mem
    assert mem["memory_efficient", 4] < 1.2 * mem["memory_efficient", 1], mem
    assert mem["naive", 4] - mem["naive", 1] > 2 * logits, mem


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
    return cfg, entry.dir


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


def test_a_model_saved_under_the_old_name_of_the_head_count_loads(tmp_path):
    """model.pt files written before ModelConfig.n_future became n_heads keep loading, weights intact."""
    model = MTPModel(ModelConfig(vocab_size=16, dim=32, n_layers=4, n_attn_heads=2, n_heads=2))
    checkpoint.save_model(tmp_path, model, {"dataset": "toy"})
    payload = checkpoint.load(tmp_path / checkpoint.MODEL_FILE)
    payload["model_config"]["n_future"] = payload["model_config"].pop("n_heads")
    checkpoint.save(tmp_path / checkpoint.MODEL_FILE, payload)
    loaded, _ = checkpoint.load_model(tmp_path)
    assert loaded.cfg.n_heads == 2
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


@pytest.mark.parametrize("spec", [[1.0, 0.5, 0.25], {"mtp_lambda": 0.3}])
def test_weighted_head_losses_have_the_naive_weighted_gradients(spec):
    """train.head_weights: the memory-efficient backward of the weighted sum equals the naive one, and differs from
    the unweighted sum (the weights reach the gradients)."""
    from mtp.training.step import head_weights
    w = head_weights(spec, 3)
    assert w == ([1.0, 0.5, 0.25] if isinstance(spec, list) else [1.0, 0.15, 0.15])
    x, ys = head_targets(torch.randint(0, 97, (3, 27)), 3)
    got = {}
    for mode, weights in (("memory_efficient", w), ("naive", w), ("naive", None)):
        model = small_model(3)
        mtp_backward(model, x, ys, mode, weights=weights)
        got[mode, weights is None] = grads(model)
    for k in got["naive", False]:
        torch.testing.assert_close(got["memory_efficient", False][k], got["naive", False][k], rtol=1e-5, atol=1e-7)
    assert not torch.allclose(got["naive", False]["heads.1.mlp.w2.weight"], got["naive", True]["heads.1.mlp.w2.weight"])


@pytest.mark.parametrize("head_type", ["transformer", "medusa", "sequential", "recursive"])
def test_heads_added_to_a_trained_model_keep_its_greedy_output(tiny_cfg, tmp_path, head_type):
    """init_from mtp:<n=1 model> with train.freeze: trunk: the source's embedding, trunk, head 1, norm and
    unembedding are bit for bit the source's after training, so greedy output is the source model's; the new
    heads trained (they changed), and speculative decoding with them is lossless."""
    from mtp.decoding.engine import decode
    cfg = _train_cfg(tiny_cfg, max_steps=20, checkpoint_every=10, eval_every=10)
    tokenize(cfg, "code")
    src = config.find_model(cfg, "code", "micro", 1)
    train(cfg, src, progress=False)
    raw = {**cfg, "sweeps": [*cfg["sweeps"], {"dataset": "code", "sizes": ["micro"], "n_heads": [3],
                                               "head_types": [head_type], "init_from": f"mtp:{src.dir}",
                                               "train": {"freeze": "trunk", "max_steps": 15, "lr": 0.01}}]}
    cfg2 = config.validate(raw)
    slot = "micro-init" if head_type == "transformer" else f"micro-init-{head_type}"
    added = config.find_model(cfg2, "code", slot, 3)
    train(cfg2, added, progress=False)
    before, _ = checkpoint.load_model(src.dir)
    after, _ = checkpoint.load_model(added.dir)
    b, a = before.state_dict(), after.state_dict()
    for k, v in b.items():
        assert torch.equal(a[k], v), k  # trunk, head 1, embedding, norm, unembedding untouched
    if head_type == "medusa":  # the new heads started as the identity (zero projections) and trained
        assert a["heads.1.proj.weight"].abs().sum() > 0
    elif head_type == "transformer":  # ... or as copies of head 1 (sequential heads: freshly initialised)
        assert not torch.equal(a["heads.1.mlp.w2.weight"], b["heads.0.mlp.w2.weight"])
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    greedy = decode(before, prompts, 16, draft_tokens=0)[0]
    assert decode(after, prompts, 16, draft_tokens=0)[0] == greedy
    assert decode(after, prompts, 16, draft_tokens=2)[0] == greedy


def test_greedy_targets_are_head_1s_choices_shifted_by_i():
    """train.targets: greedy: head i+1's target at t is head 1's greedy token at t+i, IGNORE past the window."""
    from mtp.training.step import IGNORE, Objective
    g = torch.arange(10, 30).view(2, 10)
    ys = [torch.zeros(2, 10, dtype=torch.long)] * 3
    out = Objective("greedy").head_targets(ys, g)
    assert out[0] is ys[0]  # head 1 keeps the data's target
    for i in (1, 2):
        assert torch.equal(out[i][:, :-i], g[:, i:])
        assert (out[i][:, -i:] == IGNORE).all()


KEY = {"transformer": "heads.1.mlp.w2.weight", "medusa": "heads.1.proj.weight"}  # a weight of head 2


@pytest.mark.parametrize("head_type", ["transformer", "medusa"])
@pytest.mark.parametrize("targets, loss_vocab", [("greedy", None), ("data", 20), ("greedy", 20)])
def test_objective_gradients_memory_efficient_equal_naive(head_type, targets, loss_vocab):
    """The greedy-target and candidate-vocabulary objectives give both backwards the same gradients, and they
    differ from the plain objective's (the options reach the heads' gradients)."""
    from mtp.training.step import Objective
    x, ys = head_targets(torch.randint(0, 97, (3, 27)), 3)
    obj = Objective(targets, None if loss_vocab is None else torch.arange(loss_vocab))
    got = {}
    for mode, o in (("memory_efficient", obj), ("naive", obj), ("naive", Objective())):
        model = small_model(3, head_type)
        losses = mtp_backward(model, x, ys, mode, objective=o)
        got[mode, o is obj] = grads(model), torch.stack(losses)
    (g_eff, l_eff), (g_naive, l_naive) = got["memory_efficient", True], got["naive", True]
    assert g_eff.keys() == g_naive.keys()
    for k in g_naive:
        torch.testing.assert_close(g_eff[k], g_naive[k], rtol=1e-5, atol=1e-7, msg=k)
    torch.testing.assert_close(l_eff, l_naive)
    plain = got["naive", False][0]
    assert not torch.allclose(g_naive[KEY[head_type]],
                              plain[KEY[head_type]])


def test_candidate_softmax_is_the_cross_entropy_over_the_candidates():
    """train.loss_vocab: the loss of a head over candidate ids equals cross-entropy over those logit columns."""
    from mtp.training.step import _ce
    logits = torch.randn(2, 5, 97)
    y = torch.randint(0, 97, (2, 5))
    cand = torch.unique(torch.cat([torch.arange(0, 97, 3), y.flatten()]))
    sub = logits[..., cand]
    col = torch.searchsorted(cand, y)
    torch.testing.assert_close(_ce(sub, y, cand), F.cross_entropy(sub.flatten(0, 1), col.flatten()))
    assert torch.equal(cand[col], y)


def test_training_attention_on_a_cpu_equals_flash_attention():
    """attend's training path on a CPU (the scores as matrix products) gives SDPA's causal attention and its
    gradients; without autograd (decoding, evaluation) attend is SDPA itself."""
    from mtp.nn import model as M
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = M.attend(q, k, v, None, False)
    assert out.grad_fn is not None and "Sdpa" not in type(out.grad_fn).__name__  # the scores path ran
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g))
    with torch.no_grad():
        torch.testing.assert_close(M.attend(q, k, v, None, False), ref)
