#!/usr/bin/env bash
# The GPU check for a lent H100 (device tool): run from the repo root; prints and saves JSON lines.
#   bash benchmarks/gpu_check.sh            # writes ${OUT:-.}/gpu_check.jsonl
# vLLM is not installed on that machine: the vLLM stage is not checked here.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-.}/gpu_check.jsonl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONPATH=. PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py "$@" 2>&1 | tee "$out"
