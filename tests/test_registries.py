"""The registries people extend (mtp.head_types, ...): an entry registered here, in the test suite, runs
through the real stages with no other change to the package — what docs/ARCHITECTURE.md's recipes promise."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from mtp import checkpoint, cli, config, head_types
from mtp.data import tokenize
from mtp.io import read_json
from mtp.model import Block, RMSNorm


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
                          params=lambda d: 2 * d * d + d, export="toy heads are not exportable")
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


def test_unknown_head_type_is_refused_naming_the_known_ones(tiny_cfg):
    tiny_cfg["train"]["head_type"] = "nope"
    with pytest.raises(Exception, match=r"sweeps.0.train.head_type.*unknown head type 'nope'.*transformer, linear"):
        config.validate(tiny_cfg)


@pytest.mark.parametrize("name", ["toy-mlp", "toy-unfused"])
def test_a_registered_head_type_decodes_losslessly(registered, name):
    """Greedy and self-speculative decoding agree for head types that run one by one (model.SeparateHeads),
    with and without a KV-cache layer per head; a wrong cache would change the speculative output."""
    from mtp.decode import decode
    from mtp.model import ModelConfig, MTPModel
    torch.manual_seed(0)
    model = MTPModel(ModelConfig(vocab_size=50, dim=32, n_layers=5, n_attn_heads=2, n_heads=3, head_type=name)).eval()
    with torch.no_grad():  # larger weights: peaked logits that differ by head and position
        for p in model.parameters():
            p.mul_(3.0)
    prompts = [torch.randint(0, 50, (n,)).tolist() for n in (5, 9, 3, 12)]
    greedy, _ = decode(model, prompts, 20, draft_tokens=0, batch_size=2)
    spec, stats = decode(model, prompts, 20, draft_tokens=2, batch_size=2)
    assert spec == greedy
    assert stats.row_steps > 0 and model.cfg.num_params == sum(p.numel() for p in model.parameters())


def test_a_registered_head_type_runs_train_decode_report(registered, tiny_cfg, tmp_path, capsys):
    """One new head type, registered here: trained (memory-efficient backward), decoded by `mtp decode`, and
    shown in the report, with no change to the package."""
    raw = {**tiny_cfg, "sweeps": [{"dataset": "code", "sizes": ["micro"], "n_heads": [2],
                                   "train": {"head_type": "toy-mlp", "max_steps": 10}}]}
    raw["decode"] = {**raw["decode"], "batch_sizes": [1]}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = config.load(path)
    tokenize(cfg, "code")
    model_args = ["--config", str(path), "--dataset", "code", "--size", "micro", "--n-heads", "2"]
    assert cli.main(["train", *model_args]) == 0
    entry = config.find_model(cfg, "code", "micro", 2)
    model, _ = checkpoint.load_model(entry["dir"])
    assert model.cfg.head_type == "toy-mlp" and model.cfg.n_trunk == 5  # the toy takes no trunk block
    assert read_json(f"{entry['dir']}/metrics.json")["params_total"] == model.cfg.num_params
    assert cli.main(["decode", *model_args]) == 0
    decoded = read_json(f"{entry['dir']}/decode.json")
    assert decoded["per_batch"][0]["lossless"] is True
    assert cli.main(["report", "--config", str(path), "--no-tracking"]) == 0
    rows = (tmp_path / "results" / "report" / "speculative.md").read_text()
    assert "code/micro-n2" in rows
    capsys.readouterr()
    assert cli.main(["export", *model_args]) == 2
    assert "head_type 'toy-mlp': toy heads are not exportable" in capsys.readouterr().err
