"""Minutes per rule and in total, from the output of one `snakemake` run (see study_time.sh).

Snakemake prints a timestamp line `[Sun Nov 29 17:50:00 2026]` before each job's `rule NAME:` block
and before each `Finished jobid: N (Rule: NAME)`. A job's minutes = its finish time - its start time;
per rule: the jobs' count, their summed minutes and the longest; total = last timestamp - first.
Prints a table and one JSON line.
"""
import json
import re
import sys
from collections import defaultdict
from datetime import datetime

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISH = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def parse(lines):
    """-> (per-job list of (rule, start, end), first timestamp, last timestamp)."""
    now = first = last = None
    started, jobs, pending_rule = {}, [], None
    for line in lines:
        line = line.rstrip("\n")
        if m := STAMP.match(line):
            now = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            first = first or now
            last = now
        elif m := START.match(line):
            pending_rule = (m.group(1), now)
        elif (m := JOBID.match(line)) and pending_rule:
            started[m.group(1)] = pending_rule
            pending_rule = None
        elif m := FINISH.match(line):
            rule, t0 = started.pop(m.group(1), (m.group(2), now))
            jobs.append((rule, t0, now))
    return jobs, first, last, sorted(r for r, _ in started.values())


def summarize(jobs, first, last, unfinished):
    per_rule = defaultdict(lambda: {"jobs": 0, "job_minutes": 0.0, "longest_minutes": 0.0})
    for rule, t0, t1 in jobs:
        m = (t1 - t0).total_seconds() / 60
        r = per_rule[rule]
        r["jobs"] += 1
        r["job_minutes"] = round(r["job_minutes"] + m, 2)
        r["longest_minutes"] = round(max(r["longest_minutes"], m), 2)
    total = (last - first).total_seconds() / 60 if first else None
    return {"total_minutes": round(total, 2) if total is not None else None, "rules": dict(per_rule),
            "unfinished_jobs": unfinished}


def main(path):
    with open(path) as f:
        out = summarize(*parse(f))
    print(f"{'rule':<22} {'jobs':>4} {'job-minutes':>12} {'longest':>8}")
    for rule, r in sorted(out["rules"].items(), key=lambda kv: -kv[1]["job_minutes"]):
        print(f"{rule:<22} {r['jobs']:>4} {r['job_minutes']:>12.2f} {r['longest_minutes']:>8.2f}")
    print(f"total wall-clock minutes: {out['total_minutes']}"
          + (f"  (unfinished jobs: {', '.join(out['unfinished_jobs'])})" if out["unfinished_jobs"] else ""))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
