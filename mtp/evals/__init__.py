"""Evaluations: code benchmarks (HumanEval, MBPP) and the synthetic tasks (polynomial, induction)."""
