"""Typed results: the class that a stage writes a result file through and the report reads it into, with classes
for its parts: metrics.json Metrics, decode.json Decode, vllm.json Vllm, eval_code.json EvalCode, eval_<task>.json
the task's class (TaskEval or a subclass; mtp.tasks), bench/train.json BenchTrain. mtp.results names each kind's.

Writing (mtp.stages.harness.save_result): the stage's dict is checked against the class -- a key the class does not name,
at any depth, is a bug that stops the stage (name it here) -- and stamped with the class's SCHEMA_VERSION.
Reading (mtp.report.study): the file becomes an instance; a key an older file lacks reads as its default (None,
or [] for a list), a key the class does not name is dropped, a part of the wrong JSON type reads as its default;
a file written by a newer schema is refused. The report then reads attributes, not dict keys. torch-free.
"""
from mtp.result_types.base import SCHEMA_KEY, ResultFile, SchemaError, Typed
from mtp.result_types.evals import BenchmarkScore, EvalCode, InductionEval, PolynomialEval, Problem, Sample, TaskEval
from mtp.result_types.speed import (Compared, Crosscheck, Decode, DecodeBatch, DecodeRun, Dropped, Quality, Sampling,
                                    Spread, Timed, TokensPerForward, Vllm, VllmBatch, VllmConfig, VllmCounts)
from mtp.result_types.training import BenchTrain, History, Metrics, PeakStepMemory, Shape, TimeRatio, TrainShape

__all__ = ["SCHEMA_KEY", "ResultFile", "SchemaError", "Typed", "BenchmarkScore", "EvalCode", "InductionEval",
           "PolynomialEval", "Problem", "Sample", "TaskEval", "Compared", "Timed", "Crosscheck", "Decode", "DecodeBatch", "DecodeRun",
           "Dropped", "Quality", "Sampling", "Spread", "TokensPerForward", "Vllm", "VllmBatch", "VllmConfig",
           "VllmCounts", "BenchTrain", "History", "Metrics", "PeakStepMemory", "Shape", "TimeRatio", "TrainShape"]
