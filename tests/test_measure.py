"""mtp.measure: a continuation that ends in a loop (any period up to 16) or repeats few tokens is degenerate and
dropped, a normal code continuation is not; a model is degenerate only when fewer than half of its prompts are
kept; interleaved timing marks a ratio unstable when one round is disturbed, stable when rounds are steady."""
import itertools

import pytest

from mtp import measure as M

CODE = list(b"    def area(self, r):\n        return 3.14159 * r ** 2\n\n    def name(self):\n        return 'c'\n")


def varied(seed, length=32):
    return [(seed * 7 + 3 * i) % 50 for i in range(length)]  # 32 tokens, many distinct, none dominant


def test_repeated_token_is_degenerate():
    s = M.continuation_stats([5] * 32)
    assert s["degenerate"] and s["distinct"] == 1 and s["top_share"] == 1.0
    assert s["loop_period"] == 1 and s["loop_share"] == 1.0 and "loop of period 1" in s["why"]
    q = M.output_quality([[5] * 32, [0] * 32])
    assert q["degenerate"] and q["degenerate_prompts"] == 2 and q["kept"] == [] and "degenerate output" in q["reason"]


def test_loop_of_ten_distinct_tokens_is_degenerate():
    """The old rule (>= 8 distinct tokens, none above half) let any loop of 8 or more distinct tokens through."""
    loop = list(range(12)) + list(range(20, 30)) * 5  # a 12-token start, then a 10-token loop: 50 of 62 tokens
    s = M.continuation_stats(loop)
    assert s["distinct"] == 22 and s["top_share"] < M.MAX_TOP_SHARE  # the old tests pass it
    assert s["degenerate"] and s["loop_period"] == 10 and s["loop_share"] == pytest.approx(50 / 62)
    assert M.continuation_stats(list(range(16)) * 3)["loop_period"] == 16  # the longest period looked for


def test_normal_code_continuation_is_not_degenerate():
    s = M.continuation_stats(CODE)
    assert not s["degenerate"] and s["why"] == "" and s["loop_share"] <= M.MAX_LOOP_SHARE


def test_loop_rule_at_its_boundaries():
    # period 17 (> MAX_LOOP_PERIOD): not looked for, and its 17 distinct tokens pass the other tests
    s = M.continuation_stats(list(range(17)) * 4)
    assert not s["degenerate"] and s["loop_period"] == 0
    # a loop over exactly half of the continuation is allowed, one token more is not
    start = list(range(100, 120))
    assert not M.continuation_stats(start + list(range(10)) * 2)["degenerate"]  # 20 of 40
    s = M.continuation_stats(start[:-1] + list(range(10)) * 2)  # 20 of 39
    assert s["degenerate"] and s["loop_share"] == pytest.approx(20 / 39)
    # a loop body seen once is no loop: code ending in a 16-token line it does not repeat
    assert M.loop_suffix(list(range(100, 140)) + list(range(16))) == (0, 0)


def test_short_cycle_is_degenerate():
    s = M.continuation_stats([1, 2, 3] * 10)  # "abcabc": no token above half, but only 3 distinct
    assert s["top_share"] < M.MAX_TOP_SHARE and s["degenerate"]
    # not periodic, few distinct tokens: the distinct-token test still catches it
    s = M.continuation_stats([1, 4, 4, 1, 2, 4, 3, 5, 4, 0, 4, 0, 6, 3, 2, 4, 1, 1, 5, 3, 4, 6, 4, 3, 3, 5, 6, 1])
    assert s["loop_share"] <= M.MAX_LOOP_SHARE and s["distinct"] == 7 and s["degenerate"]


def test_one_dominant_token_is_degenerate():
    assert M.continuation_stats(list(range(10)) + [0] * 9)["degenerate"]  # 10 distinct, token 0: 10/19 > 1/2
    tokens = [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9, 0, 0, 1]  # token 0: 11/21, no loop
    s = M.continuation_stats(tokens)
    assert s["loop_share"] <= M.MAX_LOOP_SHARE and s["top_share"] > M.MAX_TOP_SHARE and s["degenerate"]
    s = M.continuation_stats([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9, 1, 2])  # token 0: 9/20
    assert not s["degenerate"]


def test_varied_output_is_not_degenerate():
    outs = [varied(s) for s in range(10)] + [CODE]
    q = M.output_quality(outs)
    assert not q["degenerate"] and q["reason"] == "" and q["kept_fraction"] == 1.0
    assert q["kept"] == list(range(11)) and q["dropped"] == []
    assert q["distinct_tokens"] == [M.continuation_stats(o)["distinct"] for o in outs]


@pytest.mark.parametrize("bad, degenerate", [(0, False), (1, False), (5, False), (6, True), (10, True)])
def test_degenerate_prompts_are_dropped_the_model_only_when_fewer_than_half_are_kept(bad, degenerate):
    # 10 prompts, the first `bad` looping: those are dropped; 5 kept (half) is enough, 4 is not
    outs = [list(range(10, 20)) + [4, 5] * 11] * bad + [varied(s) for s in range(10 - bad)]
    q = M.output_quality(outs)
    assert q["degenerate_prompts"] == bad and q["kept"] == list(range(bad, 10))
    assert [d["prompt"] for d in q["dropped"]] == list(range(bad))
    assert all("loop of period 2" in d["why"] for d in q["dropped"])
    assert q["kept_fraction"] == pytest.approx((10 - bad) / 10)
    assert q["degenerate"] is degenerate and bool(q["reason"]) is degenerate
    assert q["measured"] == (list(range(10)) if degenerate else q["kept"])  # degenerate: every prompt, unscored


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
