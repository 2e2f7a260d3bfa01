"""A model of the study, named once: ModelSpec (what it is: dataset, size preset, head type, n_heads, training seed,
the source its heads are added to) and everything derived from it (its slot, name, folder, MLflow tags). mtp.config
builds one per model of the sweeps (models, find_model); the rules, the stages and the report take it. torch-free."""
from dataclasses import dataclass, field
from pathlib import Path

from mtp import head_types


def model_slot(size, head_type, init_from=None, seed=None):
    """A model's name within its dataset, before -n<n>: the size for transformer heads (the paper's), else
    <size>-<head_type>; with `-init` after the size for heads added to a model (init_from), and `-s<seed>` for a
    sweep with `seeds`. The rules' {size} wildcard and the stages' --size take it."""
    size = f"{size}-init" if init_from else size
    size = size if seed is None else f"{size}-s{seed}"
    return size if head_type == head_types.PAPER else f"{size}-{head_type}"


@dataclass(frozen=True)
class ModelSpec:
    """One model of the study (an item of mtp.config.models(cfg)): what it is and where it lives. Every stage, rule and the
    report name a model through it: `slot` (its name within the dataset: the rules' {size} wildcard and the stages'
    --size), `name` (<dataset>/<slot>-n<n_heads>), `dir` (its folder: checkpoint, export, result files, named by
    mtp.results) and `run_keys` (its MLflow tags)."""
    dataset: str
    size: str  # the size preset
    head_type: str
    n_heads: int
    seed: int  # its training seed: the sweep's seed, else the config's
    train: dict = field(hash=False)  # the train section merged with the sweep's, with the model's head_type
    results: str  # the study's results folder
    init_from: str | None = None  # the source its heads are added to (mtp.training.init_from), or None
    seeded: bool = False  # the sweep lists seeds: the slot carries -s<seed>

    @property
    def slot(self):
        return model_slot(self.size, self.head_type, self.init_from, self.seed if self.seeded else None)

    @property
    def family(self):
        """The slot without the seed: the models that differ only by training seed share it."""
        return model_slot(self.size, self.head_type, self.init_from)

    @property
    def name(self):
        return f"{self.dataset}/{self.slot}-n{self.n_heads}"

    @property
    def dir(self):
        return str(Path(self.results) / "models" / self.dataset / f"{self.slot}-n{self.n_heads}")

    def run_keys(self):
        """The MLflow tags naming this model's jobs (mtp.tracking.child_run): dataset, size, n, seed, and head_type
        unless transformer (so that runs of the paper's heads keep the identity they had before head types)."""
        keys = {"dataset": self.dataset, "size": self.size, "n": self.n_heads, "seed": self.seed}
        return keys if self.head_type == head_types.PAPER else {**keys, "head_type": self.head_type}
