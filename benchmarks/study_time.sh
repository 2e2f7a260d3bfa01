#!/usr/bin/env bash
# Time the default study from an empty results directory: minutes per rule and in total.
#   bash benchmarks/study_time.sh [CORES] [more snakemake arguments]
# Runs `snakemake --cores CORES` (default 2) with results in $STUDY_RESULTS (default results-timed/,
# removed first; its own MLflow store inside it), keeps Snakemake's output in
# benchmarks/results/study_time.log and prints the per-rule table and one JSON line
# (benchmarks/study_time.py). Run it on an idle machine: nothing else should share the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cores=${1:-2}
shift || true
out=${STUDY_RESULTS:-results-timed}
rm -rf "$out"
mkdir -p benchmarks/results
log=benchmarks/results/study_time.log
echo "study_time: snakemake --cores $cores into $out/ ($(nproc) cores here, load: $(cut -d' ' -f1-3 /proc/loadavg))"
status=0
# (Snakemake merges --config into the config files' dicts: the experiment stays the config's own)
snakemake --cores "$cores" --config "results=$out" "tracking={\"uri\": \"sqlite:///$PWD/$out/mlflow.db\"}" "$@" \
  >"$log" 2>&1 || status=$?
python benchmarks/study_time.py "$log" | tee benchmarks/results/study_time.txt
[ "$status" = 0 ] || echo "study_time: snakemake exited with status $status (see $log)" >&2
exit "$status"
