"""Polynomial arithmetic in F7[X]/(X^5): ring, text format, generators, scoring, the eval stage (mtp.stages.eval.evaluate)."""
import random

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from mtp.evals import polynomial as PE
from mtp.tasks import polynomial as P
from mtp.tokenizer import Tokenizer, byte_tokenizer
from mtp.stages.eval import evaluate

X = sympy.symbols("x")
polys = st.tuples(*[st.integers(0, 6)] * 5)
seeds = st.integers(0, 2 ** 32 - 1)


# ---- an independent implementation: sympy polynomials over GF(7), reduced mod X^5 ---------------

def to_sympy(p):
    return sympy.Poly(sum(c * X ** i for i, c in enumerate(p)), X, modulus=7)


def from_sympy(poly):
    rem = poly.rem(sympy.Poly(X ** 5, X, modulus=7))
    coeffs = [int(c) % 7 for c in reversed(rem.all_coeffs())]
    return tuple(coeffs + [0] * (5 - len(coeffs)))


def sympy_value(e):
    """Evaluate an expression tree with sympy only (truncating after every operation)."""
    if P.is_poly(e):
        return e
    if e[0] == "-":
        return from_sympy(-to_sympy(sympy_value(e[1])))
    a, b = to_sympy(sympy_value(e[1])), to_sympy(sympy_value(e[2]))
    return from_sympy({"+": a + b, "*": a * b, "@": a.compose(b)}[e[0]])


@settings(deadline=None)
@given(polys, polys)
def test_operations_match_sympy(p, q):
    assert P.neg(p) == from_sympy(-to_sympy(p))
    assert P.add(p, q) == from_sympy(to_sympy(p) + to_sympy(q))
    assert P.mul(p, q) == from_sympy(to_sympy(p) * to_sympy(q))
    assert P.compose(p, q) == from_sympy(to_sympy(p).compose(to_sympy(q)))


@settings(max_examples=40, deadline=None)
@given(seeds, st.integers(1, 10))
def test_expression_values_match_sympy(seed, m):
    e = P.random_expression(random.Random(seed), m)
    assert P.evaluate(e) == sympy_value(e)


@settings(deadline=None)
@given(polys, polys, polys)
def test_ring_axioms(p, q, r):
    zero, one, x = (0,) * 5, (1, 0, 0, 0, 0), (0, 1, 0, 0, 0)
    assert P.add(p, q) == P.add(q, p) and P.mul(p, q) == P.mul(q, p)
    assert P.add(P.add(p, q), r) == P.add(p, P.add(q, r))
    assert P.mul(P.mul(p, q), r) == P.mul(p, P.mul(q, r))
    assert P.mul(p, P.add(q, r)) == P.add(P.mul(p, q), P.mul(p, r))
    assert P.add(p, zero) == p and P.mul(p, one) == p and P.add(p, P.neg(p)) == zero
    assert P.compose(p, x) == p and P.compose(x, p) == p
    assert P.compose(P.add(p, q), r) == P.add(P.compose(p, r), P.compose(q, r))
    r0 = (0,) + r[1:]  # these need an inner polynomial without constant term (r0^5 = 0 mod X^5)
    assert P.compose(P.mul(p, q), r0) == P.mul(P.compose(p, r0), P.compose(q, r0))
    assert P.compose(P.compose(p, q), r0) == P.compose(p, P.compose(q, r0))


def test_composition_example():
    # (1 + X^2) o (2 + X) = 1 + (2 + X)^2 = 5 + 4X + X^2
    assert P.compose((1, 0, 1, 0, 0), (2, 1, 0, 0, 0)) == (5, 4, 1, 0, 0)
    # truncation: X^3 o (X + X^2) = X^3 + 3X^4 (+ 3X^5 + X^6 dropped)
    assert P.compose((0, 0, 0, 1, 0), (0, 1, 1, 0, 0)) == (0, 0, 0, 1, 3)


# ---- text format -----------------------------------------------------------------------------------

@settings(max_examples=60)
@given(seeds, st.integers(0, 12))
def test_format_round_trip_and_exact_op_count(seed, m):
    e = P.random_expression(random.Random(seed), m)
    text = P.format_expr(e)
    assert P.parse_expr(text) == e
    assert P.count_ops(e) == m
    assert sum(text.count(op) for op in P.OPS) == m
    assert set(text) <= set("0123456-+*@()")


@given(polys)
def test_poly_round_trip(p):
    assert P.parse_poly(P.format_poly(p)) == p


def test_format_example():
    e = ("*", (3, 1, 0, 0, 4), ("-", (2, 0, 1, 1, 0)))
    assert P.format_line(e) == "(31004*-20110)=15435\n"


@pytest.mark.parametrize("bad", ["", "1234", "123456", "31007", "(31004*20110", "(31004/20110)",
                                 "31004+20110", "((31004+20110)", "-", "(31004+20110))"])
def test_parse_rejects_malformed(bad):
    with pytest.raises(ValueError):
        P.parse_expr(bad)


# ---- generators -----------------------------------------------------------------------------------

def _lines(docs):
    return [line for d in docs for line in d.splitlines()]


def test_training_documents_deterministic_and_well_formed():
    a = P.training_documents(seed=3, num_documents=30, max_ops=3)
    assert a == P.training_documents(seed=3, num_documents=30, max_ops=3)
    assert a[:10] == P.training_documents(seed=3, num_documents=10, max_ops=3)
    assert a != P.training_documents(seed=4, num_documents=30, max_ops=3)
    lines = _lines(a)
    assert len(lines) == 30 * P.EXAMPLES_PER_DOCUMENT and all(d.endswith("\n") for d in a)
    ops = set()
    for line in lines:
        expr, answer = line.split("=")
        e = P.parse_expr(expr)
        assert P.parse_poly(answer) == sympy_value(e)
        assert not P.in_test_split(expr)
        ops.add(P.count_ops(e))
    assert ops == {1, 2, 3}


def test_test_set_deterministic_distinct_and_apart_from_training():
    train = set(line.split("=")[0] + "=" for line in _lines(P.training_documents(seed=0, num_documents=300)))
    for m in (1, 4, 7):
        tests = P.test_set(m, 50, seed=0)
        assert tests == P.test_set(m, 50, seed=0) and tests[:20] == P.test_set(m, 20, seed=0)
        assert tests != P.test_set(m, 50, seed=1)
        prompts = [p for p, _ in tests]
        assert len(set(prompts)) == 50 and not train & set(prompts)
        for prompt, answer in tests:
            assert prompt.endswith("=") and P.in_test_split(prompt[:-1])
            e = P.parse_expr(prompt[:-1])
            assert P.count_ops(e) == m and P.parse_poly(answer) == sympy_value(e)


def test_test_split_is_about_one_in_ten():
    rng = random.Random(0)
    share = sum(P.in_test_split(P.format_expr(P.random_expression(rng, 3))) for _ in range(4000)) / 4000
    assert 0.07 < share < 0.13


# ---- scoring ---------------------------------------------------------------------------------------

def test_score_exact_match_up_to_newline():
    answers = ["01234", "55555", "00000", "12345"]
    assert PE.score(["01234\n9", "55555", "0000", "12345 "], answers) == 0.5
    assert PE.score(answers, answers) == 1.0
    with pytest.raises(ValueError):
        PE.score(["1"], answers)


def test_summary_splits_in_and_out_of_domain():
    acc = {m: m / 10 for m in range(1, 11)}
    s = PE.summary(acc, max_ops_train=5)
    assert s["poly_acc_m3"] == 0.3 and s["poly_acc_in_domain"] == pytest.approx(0.3)
    assert s["poly_acc_out_of_domain"] == pytest.approx(0.8)
    assert PE.summary({1: 1.0}, max_ops_train=5)["poly_acc_out_of_domain"] is None


def _oracle_generate(tok, wrong_for=()):
    """A stand-in for mtp.decoding.engine.generate that answers by computing, except for m in wrong_for."""
    def generate(prompts, max_new_tokens, eod_id, batch_size):
        out = []
        for ids in prompts:
            assert ids[0] == eod_id and batch_size == 4
            e = P.parse_expr(tok.decode(ids[1:]).rstrip("="))
            answer = P.format_poly(P.evaluate(e))
            if P.count_ops(e) in wrong_for:
                answer = answer[::-1] + "0"
            out.append(tok.encode(answer + "\n")[:max_new_tokens])
        return out
    return generate


def test_accuracies_with_stand_in_generators():
    tok = Tokenizer(byte_tokenizer())
    acc = PE.accuracies(_oracle_generate(tok, wrong_for={2}), tok, range(1, 4), num_tests=5, seed=0, batch_size=4)
    assert acc == {1: 1.0, 2: 0.0, 3: 1.0}
    items = PE.correct_by_m(_oracle_generate(tok, wrong_for={2}), tok, range(1, 4), num_tests=5, seed=0, batch_size=4)
    assert items == {1: [1] * 5, 2: [0] * 5, 3: [1] * 5}  # one 0/1 per test item, in test_set order


def test_correct_marks_each_item():
    assert PE.correct(["01234\n9", "55555", "0000"], ["01234", "55555", "00000"]) == [1, 1, 0]


# ---- end to end ------------------------------------------------------------------------------------

def _study(tmp_path, dataset, kind):
    import torch

    from mtp import config
    from mtp.checkpoint import save_model
    from mtp.nn.model import ModelConfig, MTPModel
    data = tmp_path / "data"
    data.mkdir()
    Tokenizer(byte_tokenizer()).save(data / "tokenizer.json")
    cfg = config.validate({
        "results": str(tmp_path / "results"),
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "test"},
        "datasets": {dataset: {"source": {"kind": kind}}},
        "sweeps": [{"dataset": dataset, "sizes": ["debug"], "n_heads": [2]}],
        "train": {"seq_len": 64},
        "eval": {"synthetic": {"num_tests": 3, "batch_size": 8, "max_ops": 7}},
    })
    entry = config.models(cfg)[0]
    torch.manual_seed(0)
    model = MTPModel(ModelConfig.from_preset("debug", vocab_size=257, n_heads=2))
    save_model(entry.dir, model, extra={"dataset": dataset, "size": "debug", "n": 2, "data_dir": str(data)})
    return cfg, entry


def test_evaluate_model_end_to_end(tmp_path):
    from mtp import tracking
    from mtp.io import read_json
    cfg, entry = _study(tmp_path, "poly", "polynomial")
    result = evaluate(cfg, entry, "polynomial")
    saved = read_json(f"{entry.dir}/eval_polynomial.json")
    assert saved == result and saved["dataset"] == "poly" and saved["n"] == 2
    metrics = saved["metrics"]
    assert set(metrics) == {f"poly_acc_m{m}" for m in range(1, 8)} | {"poly_acc_in_domain", "poly_acc_out_of_domain"}
    assert all(0.0 <= metrics[f"poly_acc_m{m}"] <= 1.0 for m in range(1, 8))
    items = saved["correct_by_m"]  # per test item, for the report's paired bootstrap
    assert set(items) == {str(m) for m in range(1, 8)} and all(len(v) == 3 and set(v) <= {0, 1} for v in items.values())
    assert all(sum(items[m]) / 3 == saved["accuracy_by_m"][m] for m in items)
    assert tracking.find_run(cfg, "eval_polynomial", dataset="poly", size="debug", n=2, seed=0) is not None


@pytest.mark.parametrize("wrong_for", [set(), set(range(1, 8)), {2, 6}], ids=["solves", "fails", "fails-m2-m6"])
def test_evaluate_model_scores_a_model_of_known_accuracy(tmp_path, monkeypatch, wrong_for):
    """evaluate_model with mtp.decoding.engine.generate replaced by a stand-in that computes each answer from the prompt
    it is given (wrong, for m in wrong_for): the same test sets, prompts, tokenizer, scoring, file and MLflow
    run as for a trained model, so the scores are known exactly: 1 where it answers right, 0 where not."""
    import mtp.decoding.engine
    from mtp.io import read_json
    cfg, entry = _study(tmp_path, "poly", "polynomial")
    tok = Tokenizer(byte_tokenizer())
    answer = _oracle_generate(tok, wrong_for)
    seen = []

    def generate(model, prompts, max_new_tokens, eod_id, temperature=0.0, batch_size=8, **kw):
        assert temperature == 0.0 and eod_id == tok.eod_id and batch_size == 8
        seen.extend(prompts)
        return answer(prompts, max_new_tokens, eod_id, 4)
    monkeypatch.setattr(mtp.decoding.engine, "generate", generate)
    result = evaluate(cfg, entry, "polynomial")
    assert read_json(f"{entry.dir}/eval_polynomial.json") == result
    assert len(seen) == 7 * 3  # every m = 1..7, three tests each
    expect = {str(m): 0.0 if m in wrong_for else 1.0 for m in range(1, 8)}
    assert result["accuracy_by_m"] == expect
    assert result["correct_by_m"] == {m: [int(a)] * 3 for m, a in expect.items()}
    metrics = result["metrics"]
    assert metrics["poly_acc_in_domain"] == pytest.approx(sum(expect[str(m)] for m in range(1, 6)) / 5)
    assert metrics["poly_acc_out_of_domain"] == pytest.approx((expect["6"] + expect["7"]) / 2)
