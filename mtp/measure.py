"""What makes a speed figure a measurement: non-degenerate output and timings a load change cannot fake.

No torch, no MLflow: the native decode stage, the vLLM stage, the benchmarks and the report share it.

Degenerate output (a model that repeats itself accepts every draft, so its tokens per forward say nothing).
One continuation of new tokens (a model's greedy continuation of one prompt) is *degenerate* when either
- it ends in a loop: for some period p <= MAX_LOOP_PERIOD (16) tokens, its periodic suffix (the longest suffix
  in which tok[i] == tok[i - p], its first p tokens included) holds the loop body at least twice and covers more
  than MAX_LOOP_SHARE (half) of the continuation. A loop of 10 distinct tokens is caught; so is one token
  repeated (p = 1). A period above 16 tokens is not looked for (longer repeats occur in real code);
- or it has fewer than MIN_DISTINCT (8) distinct token ids, or one token id makes up more than MAX_TOP_SHARE
  (half) of it: repetitive output that is not strictly periodic (e.g. one token with a few others sprinkled in).
Degenerate continuations are *dropped*: their prompts are left out of every speed figure (timing and tokens per
forward) of the model, which is measured on the kept prompts only. The model's output is degenerate only when
fewer than MIN_KEPT_FRACTION (half) of its prompts are kept: then no speed figure of it is scored, and the stages
measure every prompt instead (the figures are only diagnostics; losslessness and the vLLM cross-checks are still
checked on every model).

Interleaved timing: every configuration runs once per round, rounds repeat, so that a change in
machine load hits every configuration alike. The ratio of two configurations is computed per round
(round r of A / round r of B); its median is the reported ratio, its min and max the spread, and the
ratio is *unstable* when (max - min) / median > UNSTABLE_SPREAD (0.25): no verdict is drawn from it.
"""
import statistics
import time
from collections import Counter

MAX_LOOP_PERIOD = 16
MAX_LOOP_SHARE = 0.5
MIN_DISTINCT = 8
MAX_TOP_SHARE = 0.5
MIN_KEPT_FRACTION = 0.5
UNSTABLE_SPREAD = 0.25


def loop_suffix(tokens, max_period=MAX_LOOP_PERIOD):
    """-> (period, length) of the longest periodic suffix of `tokens` whose period p <= max_period repeats at
    least once (length >= 2p); the smallest such p on ties; (0, 0) when there is none."""
    n, best = len(tokens), (0, 0)
    for p in range(1, min(max_period, n // 2) + 1):
        i = n - 1
        while i >= p and tokens[i] == tokens[i - p]:
            i -= 1
        length = n - 1 - i + p  # the matching positions i+1..n-1 and the first period before them
        if length >= 2 * p and length > best[1]:
            best = (p, length)
    return best


def continuation_stats(tokens):
    """One continuation (list of token ids) -> {"length", "distinct", "top_share", "loop_period", "loop_share",
    "degenerate", "why"} (why: "" when not degenerate); see the module docstring."""
    n = len(tokens)
    counts = Counter(tokens)
    top = max(counts.values()) / n if n else 1.0
    period, length = loop_suffix(tokens)
    share = length / n if n else 0.0
    why = []
    if share > MAX_LOOP_SHARE:
        why.append(f"ends in a loop of period {period} over {share:.0%} of it")
    if len(counts) < MIN_DISTINCT:
        why.append(f"{len(counts)} distinct tokens")
    if top > MAX_TOP_SHARE:
        why.append(f"one token is {top:.0%} of it")
    return {"length": n, "distinct": len(counts), "top_share": top, "loop_period": period, "loop_share": share,
            "degenerate": bool(why), "why": ", ".join(why)}


def output_quality(outputs):
    """Continuations of one model (one per prompt) -> which prompts are kept, which dropped and why, and the
    model's verdict (see the module docstring).

    -> {"prompts": int, "kept": [prompt indices], "dropped": [{"prompt": index, "why": str}],
        "measured": [the prompts the stages measure: the kept ones, every prompt when degenerate],
        "degenerate_prompts": len(dropped), "kept_fraction": float, "distinct_tokens": [...], "top_share": [...],
        "loop_period": [...], "loop_share": [...] (per prompt), "degenerate": bool,
        "reason": str ("" when not degenerate)}.
    """
    stats = [continuation_stats(list(o)) for o in outputs]
    dropped = [{"prompt": i, "why": s["why"]} for i, s in enumerate(stats) if s["degenerate"]]
    kept = [i for i, s in enumerate(stats) if not s["degenerate"]]
    kept_fraction = len(kept) / len(stats) if stats else 0.0
    degenerate = kept_fraction < MIN_KEPT_FRACTION
    reason = ""
    if degenerate:
        reason = (f"degenerate output: {len(dropped)} of {len(stats)} continuations end in a loop (period <= "
                  f"{MAX_LOOP_PERIOD}) or repeat few tokens; fewer than {MIN_KEPT_FRACTION:.0%} of the prompts "
                  f"are left to measure")
    return {"prompts": len(stats), "kept": kept, "dropped": dropped, "degenerate_prompts": len(dropped),
            "measured": list(range(len(stats))) if degenerate else kept,
            "kept_fraction": kept_fraction, "distinct_tokens": [s["distinct"] for s in stats],
            "top_share": [round(s["top_share"], 4) for s in stats],
            "loop_period": [s["loop_period"] for s in stats], "loop_share": [round(s["loop_share"], 4) for s in stats],
            "degenerate": degenerate, "reason": reason}


def interleaved(configs, rounds, warmup=1, clock=time.perf_counter, before=None, after=None):
    """Time each configuration once per round, `rounds` times -> {name: [seconds per round]}.

    configs: {name: callable()}; every callable runs `warmup` times untimed first. before (optional)
    runs before the clock starts; after (optional) runs before it stops, e.g. a CUDA synchronize so
    that the call's device work is timed.
    """
    for fn in configs.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in configs}
    for _ in range(rounds):
        for name, fn in configs.items():
            if before:
                before()
            t = clock()
            fn()
            if after:
                after()
            times[name].append(clock() - t)
    return times


def ratio(numerator, denominator, limit=UNSTABLE_SPREAD):
    """Per-round ratios of two lists of values (e.g. tokens/s of A and of B, round by round).

    -> {"median", "min", "max", "all": [...], "spread": (max - min) / median, "unstable": bool}.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"ratio needs two equal non-empty lists of rounds, got {len(numerator)} and {len(denominator)}")
    per_round = [a / b for a, b in zip(numerator, denominator)]
    med = statistics.median(per_round)
    spread = (max(per_round) - min(per_round)) / med if med else float("inf")
    return {"median": med, "min": min(per_round), "max": max(per_round), "all": per_round,
            "spread": spread, "unstable": spread > limit}


def rate_summary(tokens, seconds):
    """Tokens generated per run and the seconds of each round -> tokens/s median, min, max, all."""
    tps = [tokens / s for s in seconds]
    return {"tokens_per_s": statistics.median(tps), "tokens_per_s_min": min(tps), "tokens_per_s_max": max(tps),
            "tokens_per_s_all": tps, "seconds_all": list(seconds), "seconds": statistics.median(seconds)}
