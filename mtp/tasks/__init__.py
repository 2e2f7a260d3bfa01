"""Synthetic tasks (polynomial arithmetic, induction): their generators, test sets and vocabularies.

No torch, no model: mtp.data builds training corpora from them, mtp.evals scores models on them.
"""
