"""mtp.measure: degenerate output is detected both ways, the 90% rule at its boundary; interleaved timing
marks a ratio unstable when one round is disturbed, stable when rounds are steady."""
import itertools

import pytest

from mtp import measure as M


def varied(seed, length=32):
    return [(seed * 7 + 3 * i) % 50 for i in range(length)]  # 32 tokens, many distinct, none dominant


def test_repeated_token_is_degenerate():
    s = M.continuation_stats([5] * 32)
    assert s["degenerate"] and s["distinct"] == 1 and s["top_share"] == 1.0
    q = M.output_quality([[5] * 32, [0] * 32])
    assert q["degenerate"] and q["degenerate_prompts"] == 2 and "degenerate output" in q["reason"]


def test_short_cycle_is_degenerate():
    s = M.continuation_stats([1, 2, 3] * 10)  # "abcabc": no token above half, but only 3 distinct
    assert s["top_share"] < M.MAX_TOP_SHARE and s["degenerate"]
    assert M.continuation_stats(list(range(7)) * 4)["degenerate"]  # 7 distinct: one short of the rule
    assert not M.continuation_stats(list(range(8)) * 4)["degenerate"]  # 8 distinct, top share 1/8


def test_one_dominant_token_is_degenerate():
    assert M.continuation_stats(list(range(10)) + [0] * 9)["degenerate"]  # 10 distinct, token 0: 10/19 > 1/2
    s = M.continuation_stats(list(range(10)) + [0] * 8)  # token 0: 9/18, exactly half, is allowed
    assert s["top_share"] == M.MAX_TOP_SHARE and not s["degenerate"]


def test_varied_output_is_not_degenerate():
    outs = [varied(s) for s in range(10)]
    q = M.output_quality(outs)
    assert not q["degenerate"] and q["reason"] == "" and q["ok_fraction"] == 1.0
    assert q["distinct_tokens"] == [M.continuation_stats(o)["distinct"] for o in outs]
    assert min(q["distinct_tokens"]) >= M.MIN_DISTINCT and max(q["top_share"]) <= M.MAX_TOP_SHARE


@pytest.mark.parametrize("bad, degenerate", [(0, False), (1, False), (2, True)])
def test_ninety_percent_rule_at_its_boundary(bad, degenerate):
    # 10 prompts: 9 good (90%) is enough, 8 good (80%) is not
    outs = [[4] * 32] * bad + [varied(s) for s in range(10 - bad)]
    q = M.output_quality(outs)
    assert q["degenerate_prompts"] == bad and q["ok_fraction"] == pytest.approx((10 - bad) / 10)
    assert q["degenerate"] is degenerate and bool(q["reason"]) is degenerate


def fake_clock(durations):
    """A clock whose successive readings advance by the given durations, one per timed call."""
    now, steps = [0.0], iter(durations)
    started = [False]

    def clock():
        if started[0]:  # a reading after a call: the call took the next duration
            now[0] += next(steps)
        started[0] = not started[0]
        return now[0]
    return clock


def test_interleaved_runs_configs_in_turns_after_warmup():
    calls = []
    configs = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    times = M.interleaved(configs, 3, clock=fake_clock(itertools.repeat(1.0)))
    assert calls == ["a", "b"] + ["a", "b"] * 3  # one untimed warm-up each, then turns
    assert times == {"a": [1.0] * 3, "b": [1.0] * 3}


def test_steady_rounds_are_stable_one_slow_round_is_unstable():
    configs = {"spec": lambda: None, "ar": lambda: None}
    steady = M.interleaved(configs, 5, clock=fake_clock([1.0, 2.0, 1.02, 2.0, 0.99, 2.03, 1.0, 1.98, 1.01, 2.0]))
    r = M.ratio([10 / s for s in steady["spec"]], [10 / s for s in steady["ar"]])
    assert r["median"] == pytest.approx(2.0, rel=0.03) and not r["unstable"]
    # round 3 of spec alone hit by a load change (3x slower): the per-round ratio swings
    slow = M.interleaved(configs, 5, clock=fake_clock([1.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 1.0, 2.0]))
    r = M.ratio([10 / s for s in slow["spec"]], [10 / s for s in slow["ar"]])
    assert r["median"] == pytest.approx(2.0) and r["unstable"] and r["spread"] > M.UNSTABLE_SPREAD
    assert r["min"] == pytest.approx(2 / 3) and r["max"] == pytest.approx(2.0)


def test_interleaved_real_sleep_once_is_unstable():
    import time
    state = {"n": 0}

    def once_slow():
        state["n"] += 1
        time.sleep(0.08 if state["n"] == 3 else 0.01)  # warm-up, round 1, round 2 (slow), round 3

    times = M.interleaved({"a": once_slow, "b": lambda: time.sleep(0.01)}, 3)
    r = M.ratio([1 / t for t in times["a"]], [1 / t for t in times["b"]])
    assert r["unstable"] and r["min"] < 0.5


def test_ratio_and_rate_summary():
    with pytest.raises(ValueError, match="equal non-empty"):
        M.ratio([1.0], [1.0, 2.0])
    s = M.rate_summary(100, [1.0, 2.0, 4.0])
    assert s["tokens_per_s"] == 50.0 and s["tokens_per_s_min"] == 25.0 and s["tokens_per_s_max"] == 100.0
    assert s["seconds"] == 2.0 and s["tokens_per_s_all"] == [100.0, 50.0, 25.0]
