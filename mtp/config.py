"""Load, complete and check a study config (JSON Schema 2020-12 + the checks a schema cannot say).

Numbers are strict: `type: number` takes finite numbers only (NaN passes every bound, since it compares
False, and infinity passes open upper bounds) and `type: integer` takes integers only (JSON Schema counts a
whole float such as 8.0 or 1e300 as an integer); booleans are neither.
"""
import math
import os
from itertools import product
from pathlib import Path

import jsonschema
import yaml

from mtp import UserError, code_benchmarks, head_types
from mtp.head_types import num_params
from mtp.presets import preset, train_flops_per_step
from mtp.spec import ModelSpec
from mtp.tasks import TASKS

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


def schema():
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _with_defaults(cls):
    """A validator class that also fills in each property's `default` (as Snakemake's validate does)."""
    validate_props = cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = yaml.safe_load(yaml.safe_dump(sub["default"]))  # deep copy
        yield from validate_props(validator, props, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": properties})


def _is_integer(checker, x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(checker, x):
    return _is_integer(checker, x) or isinstance(x, float) and math.isfinite(x)


_Strict = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}))
_Validator = _with_defaults(_Strict)


def _field(error):
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _message(error):
    """The schema error's message, said plainly for the floats the strict types refuse."""
    x, types = error.instance, error.validator_value
    if error.validator == "type" and isinstance(x, float):
        if not math.isfinite(x):
            return f"{x} is not a finite number"
        if "integer" in ([types] if isinstance(types, str) else types):
            hint = f" (write {int(x)})" if abs(x) < 1e15 else ""
            return f"{x!r} is a float where a whole number is needed{hint}"
    return error.message


def validate(cfg, source="config"):
    """Fill defaults in place and check `cfg`; raise UserError naming the first bad field."""
    if not isinstance(cfg, dict):
        raise UserError(f"{source}: the config must be a mapping of keys to values, got {type(cfg).__name__}")
    errors = sorted(_Validator(schema()).iter_errors(cfg), key=lambda e: len(list(e.absolute_path)))
    if errors:
        e = errors[0]
        raise UserError(f"{source}: field '{_field(e)}': {_message(e)} (see workflow/schemas/config.schema.yaml)")
    _check_semantics(cfg, source)
    return cfg


def load_extensions(cfg, source="config"):
    """Import the config's `extensions` (modules that register head types, benchmarks, baselines)."""
    import importlib
    import sys
    if "" not in sys.path and "." not in sys.path:
        sys.path.append(".")  # the console script's sys.path lacks the working directory
    for i, name in enumerate(cfg.get("extensions") or ()):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UserError(f"{source}: field 'extensions.{i}': cannot import '{name}': {e}; put the module in "
                            f"the working directory or on PYTHONPATH") from None


def _check_semantics(cfg, source):
    load_extensions(cfg, source)
    for name, ds in cfg["datasets"].items():
        _check_source(ds["source"], f"{source}: field 'datasets.{name}.source")
    for i, bench in enumerate(cfg["eval"]["code"]["benchmarks"]):
        code_benchmarks.get(bench, f"{source}: field 'eval.code.benchmarks.{i}'")
    for i, sweep in enumerate(cfg["sweeps"]):
        where = f"{source}: field 'sweeps.{i}"
        if sweep["dataset"] not in cfg["datasets"]:
            raise UserError(f"{where}.dataset': unknown dataset '{sweep['dataset']}'; "
                            f"defined datasets: {', '.join(cfg['datasets'])}")
        _check_init_from(cfg, sweep, where)
        train = train_config(cfg, sweep)
        errors = list(_Validator(schema()["$defs"]["train"]).iter_errors(train))
        if errors:
            raise UserError(f"{where}.train.{_field(errors[0])}': {_message(errors[0])}")
        kinds = [head_types.get(t, f"{where}.head_types'").name for t in sweep.get("head_types") or ()]
        kinds = kinds or [head_types.get(train["head_type"], f"{where}.train.head_type'").name]
        weights = train.get("head_weights")
        if isinstance(weights, list) and len(weights) < max(sweep["n_heads"]):
            raise UserError(f"{where}.train.head_weights': {len(weights)} weights for models of up to "
                            f"n={max(sweep['n_heads'])} heads; give one per head (head 1 first)")
        for size in sweep["sizes"]:
            spec = preset(size, cfg["model_presets"], where=f"{where}.sizes'")
            if spec["dim"] % spec["n_attn_heads"] or spec["dim"] // spec["n_attn_heads"] % 2:
                raise UserError(f"{source}: field 'model_presets.{size}': dim {spec['dim']} / n_attn_heads "
                                f"{spec['n_attn_heads']} must be a whole, even head size (rotary embeddings)")
            if spec["n_attn_heads"] % spec.get("n_kv_heads", spec["n_attn_heads"]):
                raise UserError(f"{source}: field 'model_presets.{size}.n_kv_heads': {spec['n_kv_heads']} must divide "
                                f"n_attn_heads {spec['n_attn_heads']} (grouped-query attention)")
            for n in sweep["n_heads"]:
                if min(head_types.n_trunk(spec["n_layers"], n, t) for t in kinds) < 1:
                    raise UserError(f"{where}.n_heads': n={n} needs more than {n} layers but size '{size}' has "
                                    f"{spec['n_layers']} (a model of L layers has a trunk of L-n and n head blocks); "
                                    f"use n < {spec['n_layers']} or a deeper preset")
            if train["seq_len"] > spec.get("max_seq_len", 4096):
                raise UserError(f"{where}.train.seq_len': {train['seq_len']} exceeds size '{size}' "
                                f"max_seq_len {spec.get('max_seq_len', 4096)}")


def _check_init_from(cfg, sweep, where):
    """Heads added to a Hugging Face model (init_from: hf:<dir>) or a GGUF file (gguf:<file>) train on data in its
    own tokens."""
    kind, _, src = (sweep.get("init_from") or "").partition(":")
    tk = cfg["datasets"][sweep["dataset"]]["tokenizer"]
    if kind in ("hf", "gguf") and (tk["kind"] != kind or os.path.normpath(tk["path"]) != os.path.normpath(src)):
        raise UserError(f"{where}.init_from': {kind}:{src} reads data in its own tokens: give dataset "
                        f"'{sweep['dataset']}' tokenizer: {{kind: {kind}, path: {src}}}")


SOURCE_KINDS = ("stdlib", "files", "json", "hub")  # text corpora (the schema checks them); tasks: mtp.tasks


def _check_source(src, where):
    """A synthetic task's source options against the task's declared options (text corpora: the schema)."""
    kind = src["kind"]
    if kind in SOURCE_KINDS:
        return
    task = TASKS.lookup(kind, f"{where}.kind'")
    schema_ = {"type": "object", "additionalProperties": False, "properties": {"kind": {}, **task.options}}
    errors = list(_Validator(schema_).iter_errors(src))
    if errors:
        raise UserError(f"{where}.{_field(errors[0])}': {_message(errors[0])} (options of task '{kind}': "
                        f"{', '.join(task.options) or 'none'})")


def load(path, overrides=None):
    """Read a YAML config file, apply `overrides` (a dict merged on top), validate."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a text (UTF-8) file ({e.reason} at byte {e.start}); give a YAML config") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the config ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if overrides:
        cfg = merge(cfg or {}, overrides)
    return validate(cfg if cfg is not None else {}, source=str(path))


def merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def train_config(cfg, sweep):
    return {**cfg["train"], **sweep.get("train", {})}


def head_types_of(cfg, sweep):
    """The head types a sweep entry trains: its `head_types`, else its train.head_type."""
    return sweep.get("head_types") or [train_config(cfg, sweep)["head_type"]]


def models(cfg):
    """Every model of the study, a ModelSpec each, in the sweeps' order."""
    seen, out = set(), []
    for sweep in cfg["sweeps"]:
        for size, head_type, seed, n in product(sweep["sizes"], head_types_of(cfg, sweep),
                                                sweep.get("seeds") or [None], sweep["n_heads"]):
            m = ModelSpec(dataset=sweep["dataset"], size=size, head_type=head_type, n_heads=n,
                          seed=cfg["seed"] if seed is None else seed,
                          train={**train_config(cfg, sweep), "head_type": head_type}, results=cfg["results"],
                          init_from=sweep.get("init_from"), seeded=seed is not None)
            if (m.dataset, m.slot, n) not in seen:
                seen.add((m.dataset, m.slot, n))
                out.append(m)
    return out


def find_model(cfg, dataset, slot, n_heads):
    """The model <dataset>/<slot>-n<n_heads> of the sweeps (slot: the size, or <size>-<head_type>)."""
    for m in models(cfg):
        if (m.dataset, m.slot, m.n_heads) == (dataset, slot, int(n_heads)):
            return m
    raise UserError(f"model {dataset}/{slot}-n{n_heads} is not in the config's sweeps; "
                    f"known: {', '.join(m.name for m in models(cfg))}")


def find_model_at(cfg, path):
    """The model of the sweeps whose folder is `path` or holds it (a file of the model: model.pt, hf/config.json,
    decode.json ...)."""
    p = Path(path).resolve()
    for m in models(cfg):
        d = Path(m.dir).resolve()
        if p == d or d in p.parents:
            return m
    raise UserError(f"{path}: not in the folder of any model of the config's sweeps; their folders: "
                    f"{', '.join(m.dir for m in models(cfg))}")


def data_dir(cfg, dataset):
    return Path(cfg["results"]) / "data" / dataset


def task_of(dataset_cfg):
    """Which evaluation a dataset's models get: its source kind for a registered task (mtp.tasks), else code."""
    kind = dataset_cfg["source"]["kind"]
    return kind if kind in TASKS else "code"


def draft_model_for(cfg, m):
    """vLLM's draft_model baseline for model m, or None: the smallest n=1 model of m's dataset whose
    parameter count is at most a quarter of m's (an honest draft model is much cheaper than its target).

    Parameters are counted from the size presets (mtp.head_types.num_params: embedding + layers + unembedding;
    no model is built, torch is not imported).
    The vocabulary comes from the dataset's tokenizer config: 257 for byte, tokenizer.vocab_size for bpe
    (an upper bound: the trained vocabulary may be smaller), the same for both models, so it only moves
    the threshold. Ties: the first in the sweep.
    """
    tok = cfg["datasets"][m.dataset]["tokenizer"]
    vocab = 257 if tok["kind"] == "byte" else tok["vocab_size"]

    def params(c):
        spec = preset(c.size, cfg["model_presets"])
        kv_dim = spec.get("n_kv_heads", spec["n_attn_heads"]) * spec["dim"] // spec["n_attn_heads"]
        return num_params(vocab, spec["dim"], spec["n_layers"], n_heads=c.n_heads, head_type=c.head_type,
                          kv_dim=kv_dim)

    limit = params(m) / 4
    cands = [c for c in models(cfg) if c.dataset == m.dataset and c.n_heads == 1 and params(c) <= limit]
    return min(cands, key=params, default=None)


def train_flops(cfg, m):
    """Estimated FLOPs of training model m (a ModelSpec; presets.train_flops_per_step x steps at a byte vocabulary):
    the Snakefile starts the longest training jobs first, so that no long job starts last."""
    tc, spec = m.train, preset(m.size, cfg.get("model_presets"))
    tokens = tc["tokens"] or tc["max_steps"] * tc["batch_size"] * tc["grad_accum"] * tc["seq_len"]
    return train_flops_per_step(m.n_heads, {**spec, "vocab": 256, "seq": tc["seq_len"], "batch": tokens / tc["seq_len"]})


def launcher(cfg, dataset, slot, n_heads):
    """`mtp`, or torchrun with one process per GPU when the model's train.gpus > 1."""
    gpus = find_model(cfg, dataset, slot, n_heads).train["gpus"]
    return f"torchrun --standalone --nproc_per_node={gpus} --no-python mtp" if gpus > 1 else "mtp"


def write_resolved(cfg):
    """Write the complete config to <results>/config.yaml (only when it changed); return its path."""
    from mtp.io import write_text
    path = Path(cfg["results"]) / "config.yaml"
    text = "# Resolved config of the last Snakemake run (defaults filled in). Written by the Snakefile.\n" + \
        yaml.safe_dump(cfg, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        write_text(path, text)
    return str(path)


def coerce_cli_strings(cfg):
    """Snakemake's `--config key=<YAML>` parses nested values with YAML's BaseLoader, so every scalar
    inside arrives as a string ('1', 'true'). Give strings that are YAML numbers, booleans or null
    their type back (in place); other strings stay strings."""
    def fix(v):
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, str):
            try:
                typed = yaml.safe_load(v)
            except yaml.YAMLError:
                return v
            return typed if typed is None or isinstance(typed, (bool, int, float)) else v
        return v
    for key in list(cfg):
        cfg[key] = fix(cfg[key])
    return cfg
