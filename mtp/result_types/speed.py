"""decode.json (Decode) and vllm.json (Vllm), and the parts they share (Spread, Quality)."""
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from mtp.result_types.base import ResultFile, Typed


# ---- parts shared by decode.json and vllm.json

@dataclass
class Spread(Typed):
    """mtp.measure.ratio's spread of a speed-up over the interleaved rounds."""
    min: Optional[float] = None
    max: Optional[float] = None
    spread: Optional[float] = None
    unstable: Optional[bool] = None


@dataclass
class Dropped(Typed):
    prompt: Optional[int] = None
    why: Optional[str] = None


@dataclass
class Quality(Typed):
    """mtp.measure.output_quality: whether the greedy continuations are degenerate, which prompts were dropped."""
    degenerate: Optional[bool] = None
    reason: Optional[str] = None
    prompts: Optional[int] = None
    degenerate_prompts: Optional[int] = None
    kept: Optional[list] = None
    kept_fraction: Optional[float] = None
    dropped: Optional[list[Dropped]] = None
    measured: Optional[list] = None
    distinct_tokens: Optional[list] = None
    top_share: Optional[list] = None
    loop_share: Optional[list] = None
    loop_period: Optional[list] = None


@dataclass
class Timed(Typed):
    """Seconds and tokens per second of a timed run: the median over the interleaved rounds, every round, the range."""
    seconds: Optional[float] = None
    seconds_all: list = field(default_factory=list)
    tokens_per_s: Optional[float] = None
    tokens_per_s_all: list = field(default_factory=list)
    tokens_per_s_min: Optional[float] = None
    tokens_per_s_max: Optional[float] = None


# ---- decode.json (mtp decode: mtp.decoding.timing)

@dataclass
class DecodeRun(Timed):
    """One timed decoding configuration (autoregressive or speculative): mtp.decoding.engine.Stats and its timing.
    Schema 1 (decode.json before the counters took vLLM's names) wrote row_steps, verified_per_pos, accepted_per_pos."""
    RENAMED: ClassVar[dict] = {"row_steps": "num_drafts", "verified_per_pos": "num_draft_tokens_per_pos",
                               "accepted_per_pos": "num_accepted_tokens_per_pos"}
    draft_tokens: Optional[int] = None
    prompts: Optional[int] = None
    new_tokens: Optional[int] = None
    forwards: Optional[int] = None
    prefills: Optional[int] = None
    num_drafts: Optional[int] = None
    step_tokens: Optional[int] = None
    tokens_per_forward: Optional[float] = None
    num_draft_tokens_per_pos: list = field(default_factory=list)
    num_accepted_tokens_per_pos: list = field(default_factory=list)
    accept_rate_per_pos: Optional[list] = None
    accepted_hist: list = field(default_factory=list)


@dataclass
class Compared(Typed):
    """A baseline run (ar) against a speculative one (spec) at one batch size: the speed-up and tokens per forward."""
    batch_size: Optional[int] = None
    ar: Optional[DecodeRun] = None
    spec: Optional[DecodeRun] = None
    speedup: Optional[float] = None
    speedup_spread: Optional[Spread] = None
    tokens_per_forward: Optional[float] = None


@dataclass
class DecodeBatch(Compared):
    """Autoregressive against self-speculative greedy decoding, with the lossless check."""
    lossless: Optional[bool] = None
    mismatched_prompts: Optional[int] = None


@dataclass
class Sampling(Compared):
    """Speculative sampling at a temperature against plain sampling."""
    temperature: Optional[float] = None


@dataclass
class TokensPerForward(Typed):
    """Tokens per forward at k drafted tokens, each kept prompt alone ([tokens, forwards] per prompt)."""
    k: Optional[int] = None
    tokens_per_forward: Optional[float] = None
    per_prompt: Optional[list] = None


@dataclass
class Decode(ResultFile):
    """Schema 2: the decoding counters under vLLM's names (DecodeRun.RENAMED reads schema 1)."""
    SCHEMA_VERSION: ClassVar[int] = 2
    dataset: Optional[str] = None
    size: Optional[str] = None
    n: Optional[int] = None
    device: Optional[str] = None
    threads: Optional[int] = None
    train_run_id: Optional[str] = None
    prompts: Optional[str] = None
    num_prompts: Optional[int] = None
    prompt_len: Optional[int] = None
    max_new_tokens: Optional[int] = None
    stop_at_eod: Optional[bool] = None
    repeats: Optional[int] = None
    timing: Optional[str] = None
    timed_prompts: Optional[int] = None
    speculative: Optional[bool] = None
    draft_tokens: Optional[int] = None
    note: Optional[str] = None
    quality: Optional[Quality] = None
    per_batch: list[DecodeBatch] = field(default_factory=list)
    tokens_per_forward_by_k: list[TokensPerForward] = field(default_factory=list)
    sampling: Optional[Sampling] = None
    metrics: Optional[dict] = None


# ---- vllm.json (mtp vllm: mtp.stages.vllm)

@dataclass
class VllmCounts(Typed):
    """vLLM's speculative-decoding counters (mtp.decoding.engine.COUNTERS), of one prompt alone."""
    num_drafts: Optional[int] = None
    num_draft_tokens: Optional[int] = None
    num_accepted_tokens: Optional[int] = None
    num_accepted_tokens_per_pos: Optional[list] = None
    tokens: Optional[list] = None


@dataclass
class VllmBatch(Timed):
    """One batch size of one configuration: its timing over the interleaved rounds and its counters."""
    batch_size: Optional[int] = None
    repeats: Optional[int] = None
    new_tokens: Optional[int] = None
    outputs: Optional[list] = None
    tokens_per_s_stdev: Optional[float] = None
    speedup: Optional[float] = None
    speedup_all: Optional[list] = None
    speedup_spread: Optional[Spread] = None
    cpu_s: Optional[float] = None
    other_engines_cpu_s: Optional[float] = None
    num_drafts: Optional[int] = None
    num_draft_tokens: Optional[int] = None
    num_accepted_tokens: Optional[int] = None
    num_accepted_tokens_per_pos: Optional[list] = None
    acceptance_rate: Optional[float] = None
    acceptance_rate_per_pos: Optional[list] = None
    mean_acceptance_length: Optional[float] = None


@dataclass
class VllmConfig(Typed):
    """One served configuration: no speculation, our heads at k, or a baseline (its speculative_config)."""
    name: Optional[str] = None
    k: Optional[int] = None
    method: Optional[str] = None
    speculative_config: Optional[dict] = None
    startup_s: Optional[float] = None
    per_batch: list[VllmBatch] = field(default_factory=list)
    per_prompt: Optional[list[VllmCounts]] = None


@dataclass
class Crosscheck(Typed):
    """vLLM's greedy output and our heads' counters against the native engine's."""
    ok: Optional[bool] = None
    problems: list = field(default_factory=list)
    native_greedy: Optional[list] = None
    native_counts: Optional[dict] = None


@dataclass
class Vllm(ResultFile):
    dataset: Optional[str] = None
    size: Optional[str] = None
    n: Optional[int] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    vllm_version: Optional[str] = None
    enforce_eager: Optional[bool] = None
    max_model_len: Optional[int] = None
    train_run_id: Optional[str] = None
    export: Optional[dict] = None
    draft_model: Optional[str] = None
    prompts: Optional[str] = None
    num_prompts: Optional[int] = None
    prompt_len: Optional[int] = None
    max_new_tokens: Optional[int] = None
    batch_sizes: Optional[list] = None
    repeats: Optional[int] = None
    timing: Optional[str] = None
    timed_prompts: Optional[int] = None
    note: Optional[str] = None
    quality: Optional[Quality] = None
    configs: list[VllmConfig] = field(default_factory=list)
    crosscheck: Optional[Crosscheck] = None
    metrics: Optional[dict] = None
