"""The registry of vLLM decoding baselines: vLLM's own drafters, timed beside our heads by `mtp vllm`.

torch- and vLLM-free (the report reads it). Each entry:
- `name`: the configuration's name in vllm.json and in MLflow metrics (vllm_<name>_speedup_b1, ...);
- `method`: vLLM's speculative method, shown in the report;
- `speculative_config(vc, k, draft_hf)` -> vLLM's `speculative_config` for k drafted tokens (vc: the config's
  `vllm` section, draft_hf: the exported draft model or None), or None when it cannot run for this model;
- `switch`: the `vllm` config key that turns it on (None: always on once registered);
- `marker`: its matplotlib marker in the report's speculative figure.
The reference (no speculation, "nospec") and our heads ("heads_k<k>") are not baselines: mtp/stages/vllm.py.
"""
from dataclasses import dataclass
from typing import Callable, Optional, Union

from mtp.registry import Registry, resolve


@dataclass(frozen=True)
class Baseline:
    name: str
    method: str
    speculative_config: Union[str, Callable]
    switch: Optional[str] = None
    marker: str = "^"

    def make_config(self, vc, k, draft_hf):
        return resolve(self.speculative_config)(vc, k, draft_hf)


VLLM_BASELINES = Registry("vLLM baseline", "mtp/serving/baselines.py")
register = VLLM_BASELINES.register


def enabled(vc):
    """The baselines the `vllm` config section turns on, in registration order."""
    return [b for b in VLLM_BASELINES.values() if b.switch is None or vc.get(b.switch)]


def method_of(name):
    """vllm.json configuration name -> method: none (nospec), mtp (our heads), or the baseline's method."""
    if name == "nospec":
        return "none"
    if name.startswith("heads_k"):
        return "mtp"
    return VLLM_BASELINES[name].method if name in VLLM_BASELINES else name


def ngram(vc, k, draft_hf):
    """Prompt lookup (n-gram matching in the prompt and output so far)."""
    return {"method": "ngram", "num_speculative_tokens": k, "prompt_lookup_max": vc["ngram_prompt_lookup_max"],
            "prompt_lookup_min": min(vc["ngram_prompt_lookup_min"], vc["ngram_prompt_lookup_max"])}


def draft_model(vc, k, draft_hf):
    """A smaller model of the study drafts (mtp.config.draft_model_for picks it; None: no draft model)."""
    return draft_hf and {"method": "draft_model", "model": draft_hf, "num_speculative_tokens": k}


register(Baseline("ngram", "ngram", ngram, switch="ngram", marker="x"))
register(Baseline("draft", "draft_model", draft_model, switch="draft_model", marker="s"))
