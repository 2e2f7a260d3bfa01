"""The registries people extend (mtp.head_types, ...): an entry registered here, in the test suite, runs
through the real stages with no other change to the package — what docs/ARCHITECTURE.md's recipes promise."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from mtp import checkpoint, cli, code_benchmarks, config, head_types, tasks
from mtp.data import tokenize
from mtp.io import read_json
from mtp.nn.model import Block, RMSNorm


class ResidualMLPHead(nn.Module):
    """A toy head type: z + W2 silu(W1 norm(z)), no attention (so no KV cache), no fused form."""

    def __init__(self, cfg):
        super().__init__()
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.w1 = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.w2 = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x, cos=None, sin=None, kv=None, mask=None):
        return x + self.w2(F.silu(self.w1(self.norm(x))))


TOY = head_types.HeadType("toy-mlp", ResidualMLPHead, attends=False, takes_block=False,
                          params=lambda d, h, kv: 2 * d * d + d, export="toy heads are not exportable")
# transformer blocks run one by one (no FusedHeads): the decoding path of every head type without a fused form
UNFUSED = head_types.HeadType("toy-unfused", Block, attends=True, takes_block=True,
                              params=head_types.HEAD_TYPES["transformer"].params)


@pytest.fixture
def registered():
    for t in (TOY, UNFUSED):
        head_types.register(t)
    yield
    for t in (TOY, UNFUSED):
        head_types.HEAD_TYPES.pop(t.name)


def _trained(tmp_path, raw, dataset, n, slot="micro"):
    """Write config `raw`, tokenize `dataset`, train its model <slot>-n<n> through `mtp train`
    -> (config, the stage arguments naming the model, its sweep entry)."""
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = config.load(path)
    tokenize(cfg, dataset)
    model_args = ["--config", str(path), "--dataset", dataset, "--size", slot, "--n-heads", str(n)]
    assert cli.main(["train", *model_args]) == 0
    return cfg, model_args, config.find_model(cfg, dataset, slot, n)


def test_unknown_head_type_is_refused_naming_the_known_ones(tiny_cfg):
    tiny_cfg["train"]["head_type"] = "nope"
    with pytest.raises(Exception, match=r"sweeps.0.train.head_type.*unknown head type 'nope'.*transformer, linear"):
        config.validate(tiny_cfg)


@pytest.mark.parametrize("name", ["toy-mlp", "toy-unfused"])
def test_a_registered_head_type_decodes_losslessly(registered, name):
    """Greedy and self-speculative decoding agree for head types that run one by one (model.SeparateHeads),
    with and without a KV-cache layer per head; a wrong cache would change the speculative output."""
    from mtp.decoding.engine import decode
    from mtp.nn.model import ModelConfig, MTPModel
    torch.manual_seed(0)
    model = MTPModel(ModelConfig(vocab_size=50, dim=32, n_layers=5, n_attn_heads=2, n_heads=3, head_type=name)).eval()
    with torch.no_grad():  # larger weights: peaked logits that differ by head and position
        for p in model.parameters():
            p.mul_(3.0)
    prompts = [torch.randint(0, 50, (n,)).tolist() for n in (5, 9, 3, 12)]
    greedy, _ = decode(model, prompts, 20, draft_tokens=0, batch_size=2)
    spec, stats = decode(model, prompts, 20, draft_tokens=2, batch_size=2)
    assert spec == greedy
    assert stats.num_drafts > 0 and model.cfg.num_params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["toy-mlp", "toy-unfused"])
def test_a_registered_head_type_runs_train_decode_export_report(registered, tiny_cfg, tmp_path, capsys, name):
    """One new head type, registered here: trained (memory-efficient backward), decoded losslessly by `mtp decode`,
    exported (toy-unfused: transformers reproduces head 1's logits; toy-mlp: refused with its registered reason)
    and shown in the report, with no change to the package."""
    raw = {**tiny_cfg, "sweeps": [{"dataset": "code", "sizes": ["micro"], "n_heads": [2], "head_types": [name],
                                   "train": {"max_steps": 10}}]}
    raw["decode"] = {**raw["decode"], "batch_sizes": [1]}
    cfg, model_args, entry = _trained(tmp_path, raw, "code", 2, slot=f"micro-{name}")
    model, _ = checkpoint.load_model(entry.dir)
    assert model.cfg.head_type == name and model.cfg.n_trunk == (5 if name == "toy-mlp" else 3)  # toy-mlp takes no block
    assert read_json(f"{entry.dir}/metrics.json")["params_total"] == model.cfg.num_params
    assert cli.main(["decode", *model_args]) == 0
    decoded = read_json(f"{entry.dir}/decode.json")
    assert decoded["per_batch"][0]["lossless"] is True
    assert cli.main(["report", *model_args[:2], "--no-tracking"]) == 0
    rows = (tmp_path / "results" / "report" / "speculative.md").read_text()
    assert f"| code | micro-{name} | 2 |" in rows and entry.dir.endswith(f"code/micro-{name}-n2")
    capsys.readouterr()
    if name == "toy-mlp":
        assert cli.main(["export", *model_args]) == 2
        assert "head_type 'toy-mlp': toy heads are not exportable" in capsys.readouterr().err
        return
    assert cli.main(["export", *model_args]) == 0
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(f"{entry.dir}/hf").eval()
    idx = torch.randint(0, model.cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx, heads=[0])[0], rtol=1e-5, atol=1e-5)


def test_a_registered_head_type_has_the_naive_gradients(registered):
    """The memory-efficient backward of a registered head type equals the naive summed-loss backward."""
    from mtp.nn.model import ModelConfig, MTPModel
    from mtp.training.step import head_targets, mtp_backward
    grads = []
    for mode in ("memory_efficient", "naive"):
        torch.manual_seed(0)
        model = MTPModel(ModelConfig(vocab_size=40, dim=32, n_layers=3, n_attn_heads=2, n_heads=3, head_type="toy-mlp"))
        x, ys = head_targets(torch.randint(0, 40, (2, 19), generator=torch.Generator().manual_seed(1)), 3)
        mtp_backward(model, x, ys, mode)
        grads.append({k: p.grad for k, p in model.named_parameters()})
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-7, msg=k)


def _toy_problems(path=None):
    return [{"task_id": f"toy/{i}", "prompt": f"def f{i}(x):\n    return", "answer": i} for i in range(3)]


def _toy_program(problem, completion):
    return f"{problem['prompt']}{completion}\nassert f{problem['answer']}(0) == {problem['answer']}\n"


TOY_BENCHMARK = code_benchmarks.CodeBenchmark("toy-constant", _toy_problems, ("\n",), _toy_program)


@pytest.fixture
def toy_benchmark():
    code_benchmarks.register(TOY_BENCHMARK)
    yield
    code_benchmarks.CODE_BENCHMARKS.pop(TOY_BENCHMARK.name)


def test_a_registered_code_benchmark_is_scored_and_reported(toy_benchmark, tiny_cfg, tmp_path, capsys):
    """A code benchmark registered here: config accepts it, `mtp eval code` generates and scores it in the sandbox
    (completions cut at its stops, its programs), the report lists its pass@1; external samples score too."""
    raw = {**tiny_cfg, "sweeps": [{"dataset": "code", "sizes": ["micro"], "n_heads": [1], "train": {"max_steps": 5}}]}
    raw["eval"]["code"] = {**raw["eval"]["code"], "benchmarks": ["toy-constant"]}
    cfg, model_args, entry = _trained(tmp_path, raw, "code", 1)
    assert cli.main(["eval", "code", *model_args]) == 0
    result = read_json(f"{entry.dir}/eval_code.json")["benchmarks"]["toy-constant"]
    assert result["num_problems"] == 3 and all("\n" not in s["completion"] for p in result["problems"]
                                                for s in p["samples"])
    assert cli.main(["report", *model_args[:2], "--no-tracking"]) == 0
    assert "toy-constant" in (tmp_path / "results" / "report" / "code.md").read_text()

    samples = tmp_path / "samples.jsonl"  # right for toy/1 and toy/2, wrong for toy/0
    samples.write_text("".join(f'{{"task_id": "toy/{i}", "completion": " {a}"}}\n' for i, a in ((0, 5), (1, 1), (2, 2))))
    assert cli.main(["eval", "code", "--benchmark", "toy-constant", "--samples", str(samples), "--k", "1"]) == 0
    assert '{"pass@1": 0.6666666666666666}' in capsys.readouterr().out


def _toy_documents(seed, num_documents=50):
    """Training texts of the toy task: a letter and the same letter again ("a=a")."""
    import random
    rng = random.Random(seed)
    return ["\n".join(f"{c}={c}" for c in rng.choices("abcdef", k=40)) for _ in range(num_documents)]


def _toy_evaluate(cfg, entry, run, device):
    """Greedy answer to "x=" for each letter -> the fraction right (the stage writes eval_toy-echo.json)."""
    from mtp.decoding.engine import generate
    from mtp.tokenizer import Tokenizer
    model, payload = checkpoint.load_model(entry.dir, device=device)
    tok = Tokenizer.load(f"{payload['data_dir']}/tokenizer.json")
    outs = generate(model, [tok.encode(f"a=a\n{c}=") for c in "abcdef"], 1, tok.eod_id)
    right = sum(tok.decode(o) == c for o, c in zip(outs, "abcdef")) / 6
    return {"metrics": {"echo_acc": right}}


TOY_TASK = tasks.Task("toy-echo", _toy_documents, _toy_evaluate, "echo_acc",
                      {"num_documents": {"type": "integer", "minimum": 1}})


@pytest.fixture
def toy_task():
    tasks.register(TOY_TASK)
    yield
    tasks.TASKS.pop(TOY_TASK.name)


def test_a_registered_task_is_generated_trained_scored_and_reported(toy_task, tiny_cfg, tmp_path):
    """A synthetic task registered here: a dataset of its kind (options checked against its declaration) is
    tokenized from its documents, trained on, scored by `mtp eval toy-echo` and shown in the report."""
    raw = {**tiny_cfg, "datasets": {"echo": {"source": {"kind": "toy-echo", "num_documents": 60},
                                             "tokenizer": {"kind": "byte"}, "val_fraction": 0.1}},
           "sweeps": [{"dataset": "echo", "sizes": ["micro"], "n_heads": [1, 2], "train": {"max_steps": 40}}]}
    bad = {**raw, "datasets": {"echo": {"source": {"kind": "toy-echo", "num_docs": 60}}}}
    with pytest.raises(Exception, match=r"datasets.echo.source.*num_docs.*options of task 'toy-echo': num_documents"):
        config.validate(bad)
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = config.load(path)
    tokenize(cfg, "echo")
    for n in (1, 2):
        args = ["--config", str(path), "--dataset", "echo", "--size", "micro", "--n-heads", str(n)]
        assert cli.main(["train", *args]) == 0
        assert cli.main(["eval", "toy-echo", *args]) == 0
    assert cli.main(["report", "--config", str(path), "--no-tracking"]) == 0
    table = (tmp_path / "results" / "report" / "tasks.md").read_text()
    assert "toy-echo" in table and "echo_acc" in table
    lines = (tmp_path / "results" / "report" / "status.md").read_text().splitlines()
    header = [c.strip() for c in next(x for x in lines if x.startswith("| model")).split("|")]
    col = header.index("eval_toy-echo.json")
    assert [[c.strip() for c in x.split("|")][col] for x in lines if x.startswith("| echo/")] == ["ok", "ok"]
