"""Checkpoint files: torch.save written atomically, with a JSON sidecar holding its sha256.

A checkpoint is complete only when its sidecar exists and the digest matches, so a file
cut short by a crash or a full disk is never loaded.
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


def load_model(model_dir, device="cpu"):
    """-> (MTPModel in eval mode on `device`, payload dict without the weights)."""
    from mtp.model import ModelConfig, MTPModel
    payload = load(Path(model_dir) / MODEL_FILE)
    model = MTPModel(ModelConfig(**payload["model_config"]))
    model.load_state_dict(payload.pop("model"))
    return model.to(device).eval(), payload
