#!/usr/bin/env bash
# The default study twice, with models that differ: as committed (seed 0, induction seeds 0-2) and with another
# base seed (seed 1, induction seeds 3-5: other data order, initialisations, stdlib/story draws), each timed by
# study_time.sh on an idle machine, one after the other. Keeps the raw results of each run under
# benchmarks/results/<name>/: Snakemake's log, the per-rule table, every report table (md, csv), and every
# model's result files (metrics, decode, vllm, eval_*.json, gzipped): the per-story induction results let the
# intervals be recomputed (benchmarks/raw_numbers.py).
#   bash benchmarks/study_seeds.sh NAME_A NAME_B      (a NAME of "-" skips that run;
#   bash benchmarks/study_seeds.sh --keep DIR NAME     or keeps an existing run's results folder DIR)
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
if [ "$1" = --keep ]; then keep "$2" "$3"; exit; fi
if [ "$1" != - ]; then STUDY_RESULTS=results-seedsA bash benchmarks/study_time.sh 2; keep results-seedsA "$1"; fi
[ "$2" != - ] || exit 0
# Run B: config.yaml's sweeps with every seeds list moved past run A's (seeds: [0, 1, 2] -> [3, 4, 5]), seed 1.
python - <<'PY'
import yaml
sweeps = yaml.safe_load(open("config.yaml"))["sweeps"]
for s in sweeps:
    if "seeds" in s:
        s["seeds"] = [x + len(s["seeds"]) for x in s["seeds"]]
yaml.safe_dump({"seed": 1, "sweeps": sweeps}, open("/tmp/study-seed1.yaml", "w"), default_flow_style=None)
PY
STUDY_RESULTS=results-seedsB bash benchmarks/study_time.sh 2 --configfile /tmp/study-seed1.yaml
keep results-seedsB "$2"
