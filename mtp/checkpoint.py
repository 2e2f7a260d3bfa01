"""Checkpoint files: torch.save written atomically, with a JSON sidecar holding its sha256.

A checkpoint is complete only when its sidecar exists and the digest matches, so a file
cut short by a crash or a full disk is never loaded. Training keeps its two newest checkpoints,
<model>/ckpt/step-<step>.pt, and resumes from the newest valid one.
"""
from dataclasses import asdict
from pathlib import Path

import torch

from mtp import UserError
from mtp.io import atomic_path, read_json, remove_stale_temps, sha256_file, write_json  # noqa: F401 (re-exported)

MODEL_FILE = "model.pt"


def save(path, payload, meta=None):
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except OSError as e:
        raise UserError(f"{path}: could not write checkpoint ({e.strerror}); free disk space and rerun — "
                        f"the previous checkpoint is untouched") from None
    try:
        write_json(path.with_suffix(".json"), {**(meta or {}), "sha256": sha256_file(path), "file": path.name})
    except (OSError, UserError) as e:
        path.unlink(missing_ok=True)  # never valid without its sidecar: give its space back
        if isinstance(e, UserError):
            raise
        raise UserError(f"{path.with_suffix('.json')}: could not write the checkpoint's sidecar ({e.strerror}); "
                        f"free disk space and rerun — the previous checkpoint is untouched") from None


def is_valid(path):
    path = Path(path)
    side = path.with_suffix(".json")
    if not (path.exists() and side.exists()):
        return False
    try:
        return read_json(side)["sha256"] == sha256_file(path)
    except (UserError, KeyError):
        return False


def load(path, map_location="cpu"):
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found (train the model first)")
    if not is_valid(path):
        raise UserError(f"{path}: checkpoint is corrupt or incomplete (sha256 differs from {path.with_suffix('.json').name}); "
                        f"delete it and rerun training")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - unpickling raises many kinds; the digest matched, so the file is foreign
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]}) "
                        f"though it matches its sidecar; delete both and rerun training") from None


def save_model(model_dir, model, extra, state_dict=None):
    """The final model of a training run: weights + model config + what stages need to use it."""
    sd = model.state_dict() if state_dict is None else state_dict
    save(Path(model_dir) / MODEL_FILE, {"model_config": asdict(model.cfg), "model": sd, **extra},
         meta={k: v for k, v in extra.items() if isinstance(v, (str, int, float))})


def model_config(payload):
    """The ModelConfig fields of a model.pt payload; models saved before the number of heads had one name
    (ModelConfig.n_future until 2026-11-29) load too."""
    mc = dict(payload["model_config"])
    if "n_future" in mc:
        mc["n_heads"] = mc.pop("n_future")
    return mc


def load_model(model_dir, device="cpu"):
    """-> (MTPModel in eval mode on `device`, payload dict without the weights)."""
    from mtp.nn.model import ModelConfig, MTPModel
    payload = load(Path(model_dir) / MODEL_FILE)
    model = MTPModel(ModelConfig(**model_config(payload)))
    model.load_state_dict(payload.pop("model"))
    return model.to(device).eval(), payload


# ---------------------------------------------------------------- training checkpoints

def _ckpts(folder):
    return sorted(Path(folder).glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))


def latest_checkpoint(folder):
    """The newest checkpoint whose sha256 matches its sidecar; broken ones are skipped."""
    for path in reversed(_ckpts(folder)):
        if is_valid(path):
            return path
    return None


def full_state(model, opt=None):
    """Unsharded state dicts (model, optimizer) keyed by parameter name, on CPU: the same format
    whatever the number of processes or FSDP/DDP, so a run resumes on any number of processes.
    Every process must call it (FSDP gathers the shards)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    sd = get_model_state_dict(model, options=opts)
    return sd, (get_optimizer_state_dict(model, opt, options=opts) if opt is not None else None)


def load_full_state(model, opt, sd, osd):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict
    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, sd, options=opts)
    set_optimizer_state_dict(model, opt, osd, options=opts)


def save_checkpoint(folder, step, model, opt, state, rank=0):
    """step-<step>.pt in `folder` (written by rank 0; every process must call it), then the older ones
    removed but the newest two."""
    sd, osd = full_state(model, opt)
    path = Path(folder) / f"step-{step:07d}.pt"
    if rank != 0:
        return path
    save(path, {"model": sd, "optimizer": osd, "step": step,
                "torch_rng": torch.get_rng_state(), "state": state}, meta={"step": step})
    for old in _ckpts(folder)[:-2]:  # keep the two newest
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)
    return path
