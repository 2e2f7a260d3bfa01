import subprocess
from pathlib import Path
import sys

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from mtp import UserError, config
from conftest import ROOT


def default():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_default_and_test_configs_validate():
    cfg = config.validate(default())
    assert len(config.models(cfg)) >= 5
    assert {m.n_heads for m in config.models(cfg)} >= {1, 2, 4}
    config.load(ROOT / ".test" / "config.yaml")
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        config.load(path)


@pytest.mark.parametrize("name", ["add-heads", "head-types"])
def test_configs_sharing_the_default_studys_results_are_it_plus_sweeps(name):
    """configs/add-heads.yaml and head-types.yaml share the default study's results: any other difference from
    config.yaml would make Snakemake retrain the default study's models (their params digests change)."""
    base, add = (yaml.safe_load(p.read_text()) for p in (ROOT / "config.yaml", ROOT / "configs" / f"{name}.yaml"))
    assert {k: v for k, v in add.items() if k != "sweeps"} == {k: v for k, v in base.items() if k != "sweeps"}
    assert add["sweeps"][:len(base["sweeps"])] == base["sweeps"] and len(add["sweeps"]) > len(base["sweeps"])


@pytest.mark.parametrize("change, field", [
    (lambda c: c.update(unknown_key=1), "unknown_key"),
    (lambda c: c["train"].update(lr="fast"), "train.lr"),
    (lambda c: c["train"].update(batch_size=-3), "train.batch_size"),
    (lambda c: c["sweeps"][0].update(n_heads=[]), "sweeps.0.n_heads"),
    (lambda c: c["sweeps"][0].update(sizes=["huge"]), "sweeps.0.sizes"),
    (lambda c: c["sweeps"][0].update(n_heads=[12]), "sweeps.0.n_heads"),
    (lambda c: c["sweeps"][0].update(dataset="nope"), "sweeps.0.dataset"),
    (lambda c: c["datasets"]["code-bytes"]["source"].update(kind="ftp"), "datasets.code-bytes.source.kind"),
    (lambda c: c["datasets"]["code-bytes"].update(tokenizer={"kind": "bpe", "vocab_size": 10}),
     "datasets.code-bytes.tokenizer.vocab_size"),
    (lambda c: c.update(sweeps=[]), "sweeps"),
])
def test_bad_configs_name_the_field(change, field):
    cfg = default()
    change(cfg)
    with pytest.raises(UserError) as e:
        config.validate(cfg)
    assert f"'{field}" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("path, value, says", [
    (("datasets", "code-bytes", "val_fraction"), float("nan"), "not a finite number"),
    (("train", "lr"), float("nan"), "not a finite number"),
    (("train", "lr"), float("inf"), "not a finite number"),
    (("train", "lr"), float("-inf"), "not a finite number"),
    (("eval", "code", "timeout_s"), float("nan"), "not a finite number"),
    (("train", "batch_size"), 8.0, "8.0 is a float where a whole number is needed (write 8)"),
    (("train", "max_steps"), 1e300, "a whole number is needed"),
    (("decode", "draft_tokens"), 2.0, "a whole number is needed"),  # type [integer, null]
    (("sweeps", 1, "train", "max_steps"), 400.0, "a whole number is needed"),  # a sweep's own train section
], ids=str)
def test_numbers_the_schema_lets_through_are_refused(path, value, says):
    """NaN and infinity (YAML .nan / .inf) in a number field, and a whole float (YAML 8.0, 1e300) in an integer
    field, pass JSON Schema's bounds and types: validate refuses them, in one line naming the field. They
    travel through YAML as a config file would."""
    cfg = default()
    parent = cfg
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    cfg = yaml.safe_load(yaml.safe_dump(cfg))
    with pytest.raises(UserError) as e:
        config.validate(cfg)
    assert f"field '{'.'.join(map(str, path))}'" in str(e.value) and says in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_finite_floats_and_integers_still_pass():
    cfg = default()
    cfg["train"].update(lr=3e-4, grad_clip=1, batch_size=8)  # an integer where a number is wanted is fine
    config.validate(cfg)


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5), st.lists(st.integers(-2, 2), max_size=2))


@settings(max_examples=60, deadline=None)
@given(section=st.sampled_from(["train", "decode", "vllm", "seed", "results"]), key=st.text(min_size=1, max_size=8),
       value=VALUES)
def test_random_bad_values_never_crash(section, key, value):
    """Any value anywhere: either a valid config or a UserError, never another exception."""
    cfg = default()
    if isinstance(cfg.get(section), dict):
        cfg[section][key] = value
    else:
        cfg[section] = value
    try:
        config.validate(cfg)
    except UserError as e:
        assert "\n" not in str(e)


def test_cli_reports_config_errors_in_one_line(tmp_path):
    bad = default()
    bad["train"]["seq_len"] = "long"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    out = subprocess.run([sys.executable, "-m", "mtp.cli", "tokenize", "--config", str(tmp_path / "bad.yaml"),
                          "--dataset", "code"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "train.seq_len" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_help_explains_every_stage():
    out = subprocess.run([sys.executable, "-m", "mtp.cli", "--help"], capture_output=True, text=True)
    for stage in ("tokenize", "train", "decode", "vllm", "eval", "report", "export", "bench", "ui"):
        assert stage in out.stdout
    out = subprocess.run([sys.executable, "-m", "mtp.cli", "tokenize", "--help"], capture_output=True, text=True)
    assert "--dataset" in out.stdout and out.returncode == 0


def test_snakemake_cli_strings_get_their_types_back():
    raw = default()
    raw["train"] = {"max_steps": "400", "compile": "true", "lr": "0.001", "device": "cpu", "tokens": "null"}
    raw["sweeps"] = [{"dataset": "code-bytes", "sizes": ["1M", "0.3B"], "n_heads": ["1", "2"]}]
    cfg = config.validate(config.coerce_cli_strings(raw))
    assert cfg["train"]["max_steps"] == 400 and cfg["train"]["compile"] is True and cfg["train"]["tokens"] is None
    assert cfg["train"]["device"] == "cpu" and cfg["sweeps"][0]["sizes"] == ["1M", "0.3B"]
    assert cfg["sweeps"][0]["n_heads"] == [1, 2]


def test_a_stage_names_its_model_by_a_path_in_its_folder(tiny_cfg, tmp_path, monkeypatch):
    """--model PATH (what the rules pass: the model.pt, hf/config.json or a result file of the model) names the same
    ModelSpec as --dataset/--size/--n-heads, relative paths too; a path in no model's folder, a folder that only
    starts like one, or no model named at all is refused in one line."""
    import argparse
    from mtp import UserError
    from mtp.args import add_model_args, model_spec
    p = argparse.ArgumentParser()
    add_model_args(p)
    m = config.find_model(tiny_cfg, "code", "micro-medusa", 2)
    for path in (m.dir, f"{m.dir}/model.pt", f"{m.dir}/hf/config.json"):
        assert model_spec(tiny_cfg, p.parse_args(["--model", path])) == m
    monkeypatch.chdir(tmp_path)
    rel = str(Path(m.dir).relative_to(tmp_path) / "decode.json")
    assert model_spec(tiny_cfg, p.parse_args(["--model", rel])) == m
    assert model_spec(tiny_cfg, p.parse_args(["--dataset", "code", "--size", "micro-medusa", "--n-heads", "2"])) == m
    for bad in (f"{tmp_path}/elsewhere/model.pt", f"{m.dir}x/model.pt"):
        with pytest.raises(UserError, match="not in the folder of any model"):
            model_spec(tiny_cfg, p.parse_args(["--model", bad]))
    with pytest.raises(UserError, match="name the model: --model PATH.*--size, --n-heads"):
        model_spec(tiny_cfg, p.parse_args(["--dataset", "code"]))
