#!/usr/bin/env bash
# The default study twice, with models that differ: as committed (seed 0, induction seeds 0-2) and with another
# base seed (seed 1, induction seeds 3-5: other data order, initialisations, stdlib/story draws), each timed by
# study_time.sh on an idle machine, one after the other. Keeps the raw results of each run under
# benchmarks/results/<name>/: Snakemake's log, the per-rule table, every report table (md, csv), and every
# model's result files (metrics, decode, vllm, eval_*.json, gzipped): the per-story induction results let the
# intervals be recomputed (benchmarks/raw_numbers.py).
#   bash benchmarks/study_seeds.sh NAME_A NAME_B
set -euo pipefail
cd "$(dirname "$0")/.."
keep() {  # results folder -> benchmarks/results/$2/
  local src=$1 dst=benchmarks/results/$2
  rm -rf "$dst" && mkdir -p "$dst"
  cp benchmarks/results/study_time.txt "$dst/" && gzip -c benchmarks/results/study_time.log >"$dst/study_time.log.gz"
  cp "$src"/report/*.md "$src"/report/*.csv "$dst/"
  (cd "$src/models" && find . -name '*.json' -not -path '*/ckpt/*' -not -path '*/hf/*' | while read -r f; do
     mkdir -p "$OLDPWD/$dst/models/$(dirname "$f")" && gzip -c "$f" >"$OLDPWD/$dst/models/$f.gz"; done)
  cp "$src/bench/train.json" "$dst/bench_train.json" 2>/dev/null || true
}
STUDY_RESULTS=results-seedsA bash benchmarks/study_time.sh 2
keep results-seedsA "$1"
cat >/tmp/study-seed1.yaml <<'YAML'
seed: 1
sweeps:
  - {dataset: code-bytes, sizes: [deep], n_heads: [4]}
  - {dataset: code-bytes, sizes: [tiny], n_heads: [1], train: {max_steps: 400}}
  - {dataset: induction, sizes: [1M], n_heads: [1, 2], seeds: [3, 4, 5], train: {max_steps: 1000}}
YAML
STUDY_RESULTS=results-seedsB bash benchmarks/study_time.sh 2 --configfile /tmp/study-seed1.yaml
keep results-seedsB "$2"
