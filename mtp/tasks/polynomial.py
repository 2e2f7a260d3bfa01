"""Polynomial arithmetic in F7[X]/(X^5) (Gloeckle et al. 2024, Section 4.2): the task and its data.

Ring. A polynomial is its 5 coefficients mod 7, lowest degree first: (c0, c1, c2, c3, c4)
is c0 + c1 X + ... + c4 X^4. Operations: negation, addition, multiplication (truncated
mod X^5) and composition p @ q := sum_i p_i q^i mod X^5, evaluated on these canonical
representatives (degree < 5) with q taken whole, constant term included. That map is well
defined on residues in q (u -> p(u) mod X^5 only depends on u mod X^5) and is associative
when the inner polynomial has zero constant term; with a nonzero constant term it is still
a fixed function of the two canonical forms, and the text always brackets it explicitly.

Text format (one example per line, bytes only from "0123456-+*@()=\\n"):
    poly   := 5 digits 0-6, lowest degree first         "31004" = 3 + X + 4X^4
    expr   := poly | "-" expr | "(" expr op expr ")"    op: "+" add, "*" multiply, "@" compose
    line   := expr "=" poly "\\n"                        the answer is the value of expr
e.g. "(31004*-20110)=15435\\n". Every binary operation is bracketed (the outermost too), so
an expression with m operations holds exactly m operator bytes. A training document is
EXAMPLES_PER_DOCUMENT lines; the number of operations of each line is uniform in 1..max_ops.

Train/test separation. Training documents and test sets draw from differently named random
streams ("polynomial-train:<seed>:<doc>" vs "polynomial-test:<seed>:<m>"), and on top of that
an expression belongs to the test split iff sha256(expr) % TEST_BUCKETS == 0: training never
emits such an expression and test sets contain only such expressions, so no test prompt can
occur in training data whatever the seeds (important for m=1 negations: only 7^5 exist).

Scoring a model on it: mtp/evals/polynomial.py.
"""
import hashlib
import random

P, DEGREE = 7, 5  # coefficients mod P, polynomials mod X^DEGREE
OPS = ("-", "+", "*", "@")  # negation (unary), addition, multiplication, composition
EXAMPLES_PER_DOCUMENT = 10
TEST_BUCKETS = 10  # 1 in 10 expressions (by hash) is reserved for tests
ANSWER_LEN = DEGREE  # the answer is one poly: 5 digits


# ---- ring arithmetic -------------------------------------------------------------------------

def neg(p):
    return tuple(-a % P for a in p)


def add(p, q):
    return tuple((a + b) % P for a, b in zip(p, q))


def mul(p, q):
    out = [0] * DEGREE
    for i, a in enumerate(p):
        if a:
            for j in range(DEGREE - i):
                out[i + j] += a * q[j]
    return tuple(c % P for c in out)


def compose(p, q):
    """p(q(X)) mod X^5 by Horner's rule in the truncated ring."""
    out = (p[-1],) + (0,) * (DEGREE - 1)
    for c in reversed(p[:-1]):
        out = mul(out, q)
        out = ((out[0] + c) % P,) + out[1:]
    return out


APPLY = {"+": add, "*": mul, "@": compose}


# ---- expressions: a poly is a tuple of ints; ("-", e) and (op, a, b) are operations -----------

def is_poly(e):
    return not isinstance(e[0], str)


def evaluate(e):
    if is_poly(e):
        return e
    if e[0] == "-":
        return neg(evaluate(e[1]))
    return APPLY[e[0]](evaluate(e[1]), evaluate(e[2]))


def count_ops(e):
    return 0 if is_poly(e) else 1 + sum(count_ops(c) for c in e[1:])


def random_poly(rng):
    return tuple(rng.randrange(P) for _ in range(DEGREE))


def random_expression(rng, m):
    """An expression with exactly m operations: operator uniform, operands uniform, the m-1
    remaining operations of a binary node split uniformly between its two sides."""
    if m == 0:
        return random_poly(rng)
    op = rng.choice(OPS)
    if op == "-":
        return ("-", random_expression(rng, m - 1))
    left = rng.randrange(m)
    return (op, random_expression(rng, left), random_expression(rng, m - 1 - left))


# ---- text ---------------------------------------------------------------------------------------

def format_poly(p):
    return "".join(str(c) for c in p)


def format_expr(e):
    if is_poly(e):
        return format_poly(e)
    if e[0] == "-":
        return "-" + format_expr(e[1])
    return f"({format_expr(e[1])}{e[0]}{format_expr(e[2])})"


def format_line(e):
    return f"{format_expr(e)}={format_poly(evaluate(e))}\n"


def parse_poly(text):
    if len(text) != DEGREE or any(c not in "0123456" for c in text):
        raise ValueError(f"not a polynomial of {DEGREE} digits 0-6: {text!r}")
    return tuple(int(c) for c in text)


def parse_expr(text):
    """Inverse of format_expr; ValueError on anything else."""
    e, end = _parse(text, 0)
    if end != len(text):
        raise ValueError(f"trailing text at {end} in {text!r}")
    return e


def _parse(s, i):
    if s.startswith("-", i):
        e, i = _parse(s, i + 1)
        return ("-", e), i
    if s.startswith("(", i):
        a, i = _parse(s, i + 1)
        if i >= len(s) or s[i] not in APPLY:
            raise ValueError(f"expected one of {''.join(APPLY)} at {i} in {s!r}")
        op = s[i]
        b, i = _parse(s, i + 1)
        if not s.startswith(")", i):
            raise ValueError(f"expected ')' at {i} in {s!r}")
        return (op, a, b), i + 1
    return parse_poly(s[i:i + DEGREE]), i + DEGREE


def in_test_split(expr_text):
    """The fixed hash split: True for the ~1/TEST_BUCKETS expressions reserved for tests."""
    return int.from_bytes(hashlib.sha256(expr_text.encode()).digest()[:8], "big") % TEST_BUCKETS == 0


# ---- data ---------------------------------------------------------------------------------------

def training_documents(seed, num_documents=20000, max_ops=5):
    """num_documents documents of EXAMPLES_PER_DOCUMENT lines; document i depends only on (seed, i)."""
    docs = []
    for i in range(num_documents):
        rng = random.Random(f"polynomial-train:{seed}:{i}")
        lines = []
        while len(lines) < EXAMPLES_PER_DOCUMENT:
            e = random_expression(rng, rng.randint(1, max_ops))
            if not in_test_split(format_expr(e)):
                lines.append(format_line(e))
        docs.append("".join(lines))
    return docs


def test_set(m, num_tests, seed):
    """num_tests distinct (prompt, answer) pairs with m operations: prompt "expr=", answer 5 digits.

    Deterministic in (m, seed); a smaller num_tests gives a prefix of a larger one.
    """
    rng = random.Random(f"polynomial-test:{seed}:{m}")
    seen, out = set(), []
    for _ in range(1000 * TEST_BUCKETS * num_tests):
        if len(out) == num_tests:
            return out
        e = random_expression(rng, m)
        text = format_expr(e)
        if text not in seen and in_test_split(text):
            seen.add(text)
            out.append((text + "=", format_poly(evaluate(e))))
    raise ValueError(f"could not draw {num_tests} distinct test expressions with m={m}")
