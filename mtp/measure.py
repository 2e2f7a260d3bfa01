"""What makes a speed figure a measurement: non-degenerate output and timings a load change cannot fake.

No torch, no MLflow: the native decode stage, the vLLM stage, the benchmarks and the report share it.

Degenerate output (a model that repeats one token accepts every draft, so its tokens per forward say
nothing). For one continuation of new tokens:
- distinct = number of distinct token ids in it;
- top_share = count of its most frequent token / its length;
- it is *degenerate* when distinct < MIN_DISTINCT (8) or top_share > MAX_TOP_SHARE (0.5).
A set of continuations (one model, one engine) is degenerate when fewer than MIN_OK_FRACTION (90%)
of them are non-degenerate. Speed figures of a degenerate set are never scored.

Interleaved timing: every configuration runs once per round, rounds repeat, so that a change in
machine load hits every configuration alike. The ratio of two configurations is computed per round
(round r of A / round r of B); its median is the reported ratio, its min and max the spread, and the
ratio is *unstable* when (max - min) / median > UNSTABLE_SPREAD (0.25): no verdict is drawn from it.
"""
import statistics
import time
from collections import Counter

MIN_DISTINCT = 8
MAX_TOP_SHARE = 0.5
MIN_OK_FRACTION = 0.9
UNSTABLE_SPREAD = 0.25


def continuation_stats(tokens):
    """One continuation (list of token ids) -> {"length", "distinct", "top_share", "degenerate"}."""
    n = len(tokens)
    counts = Counter(tokens)
    top = max(counts.values()) / n if n else 1.0
    distinct = len(counts)
    return {"length": n, "distinct": distinct, "top_share": top,
            "degenerate": distinct < MIN_DISTINCT or top > MAX_TOP_SHARE}


def output_quality(outputs):
    """Continuations of one model -> per-prompt stats and the verdict (see the module docstring).

    -> {"distinct_tokens": [...], "top_share": [...], "degenerate_prompts": int, "prompts": int,
        "ok_fraction": float, "degenerate": bool, "reason": str ("" when not degenerate)}.
    """
    stats = [continuation_stats(list(o)) for o in outputs]
    bad = sum(s["degenerate"] for s in stats)
    ok_fraction = (len(stats) - bad) / len(stats) if stats else 0.0
    degenerate = ok_fraction < MIN_OK_FRACTION
    reason = ""
    if degenerate:
        reason = (f"degenerate output: {bad} of {len(stats)} continuations have < {MIN_DISTINCT} distinct tokens "
                  f"or one token above {MAX_TOP_SHARE:.0%} (at most {1 - MIN_OK_FRACTION:.0%} may)")
    return {"distinct_tokens": [s["distinct"] for s in stats], "top_share": [round(s["top_share"], 4) for s in stats],
            "degenerate_prompts": bad, "prompts": len(stats), "ok_fraction": ok_fraction,
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
