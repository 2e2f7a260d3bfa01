"""metrics.json (Metrics) and the train benchmark bench/train.json (BenchTrain)."""
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from mtp.result_types.base import ResultFile, Typed
from mtp.result_types.speed import Spread


# ---- metrics.json (mtp train: mtp.training.loop.finish)

@dataclass
class History(Typed):
    """Per logged step: "step" and the values at it (loss, lr, loss_head_<i>; validation: val_loss_head_<i>,
    val_agree_head_<i>, wall_s)."""
    KEYED: ClassVar[tuple] = (r"(val_)?loss_head_\d+", r"val_agree_head_\d+")
    step: list = field(default_factory=list)
    loss: Optional[list] = None
    lr: Optional[list] = None
    wall_s: Optional[list] = None
    keyed: dict = field(default_factory=dict)


@dataclass
class Metrics(ResultFile):
    """What training did: sizes, final validation loss per head (val_loss_head_<i>) and agreement with head 1
    (val_agree_head_<i>), parameters per part (params_head_<i>), time and memory, the histories."""
    KEYED: ClassVar[tuple] = (r"val_loss_head_\d+", r"val_agree_head_\d+", r"params_head_\d+")
    dataset: Optional[str] = None
    size: Optional[str] = None
    head_type: Optional[str] = None
    n: Optional[int] = None
    steps: Optional[int] = None
    tokens_seen: Optional[int] = None
    wall_s: Optional[float] = None
    params_total: Optional[int] = None
    params_non_embedding: Optional[int] = None
    params_trunk: Optional[int] = None
    val_bits_per_byte: Optional[float] = None
    peak_mem_bytes: Optional[int] = None
    step_time_s: Optional[float] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    history: Optional[History] = None
    val_history: Optional[History] = None
    train_run_id: Optional[str] = None
    logged_model_id: Optional[str] = None
    keyed: dict = field(default_factory=dict)


# ---- bench/train.json (mtp bench train --dataset ... --out: mtp.training.bench.bench_study_train)

@dataclass
class PeakStepMemory(Typed):
    """Peak memory one training step adds, MiB, per backward and n: memory_efficient_n<k>, naive_n<k>."""
    KEYED: ClassVar[tuple] = (r"(memory_efficient|naive)_n\d+",)
    keyed: dict = field(default_factory=dict)


@dataclass
class TimeRatio(Spread):
    """mtp.measure.ratio over interleaved rounds: the median ratio, its rounds (all) and their spread."""
    median: Optional[float] = None
    all: Optional[list] = None


@dataclass
class Shape(Typed):
    """A measured model shape: width, layers, attention heads, vocabulary, tokens a step (seq x batch)."""
    dim: Optional[int] = None
    n_layers: Optional[int] = None
    n_attn_heads: Optional[int] = None
    n_kv_heads: Optional[int] = None
    vocab: Optional[int] = None
    seq: Optional[int] = None
    batch: Optional[int] = None


@dataclass
class TrainShape(Typed):
    """One measured shape: its step times by n, the time ratio n/n=1 over interleaved rounds
    (mtp.measure.ratio: median, min, max, spread, unstable, all), the FLOP-count prediction, peak step memory."""
    label: Optional[str] = None
    shape: Optional[Shape] = None
    n: Optional[int] = None
    step_s: Optional[dict] = None
    time_ratio: Optional[TimeRatio] = None
    flop_ratio: Optional[float] = None
    peak_step_mem_mb: Optional[PeakStepMemory] = None


@dataclass
class BenchTrain(ResultFile):
    KEYED: ClassVar[tuple] = (r"(flop|time|mem|naive_mem)_ratio_n\d+_vs_n\d+",)  # files of an older mtp bench
    model: Optional[str] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    torch_threads: Optional[int] = None
    repeats: Optional[int] = None
    shapes: list[TrainShape] = field(default_factory=list)
    peak_step_mem_mb: Optional[dict] = None  # files of an older mtp bench (one shape)
    keyed: dict = field(default_factory=dict)
