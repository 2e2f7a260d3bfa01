"""Every registered synthetic task (mtp.tasks) in one table: per model, the task's headline metric from its
eval_<task>.json, and for n > 1 the difference to the n=1 model of the same size. Tasks with a section of
their own (polynomial, induction: mtp.report.synthetic) also have their paired intervals there; a task
registered without report code of its own shows here."""
from mtp.report.study import baseline, get, num, order
from mtp.tasks import TASKS


def task_rows(records):
    rows = []
    for r in sorted(records, key=order):
        task = TASKS.get(r["task"]) if r["task"] in TASKS else None
        if task is None:
            continue
        value = num(get(r["results"][task.name], "metrics", task.metric))
        base = baseline(records, r)
        ref = num(get(base["results"][task.name], "metrics", task.metric)) if base and r["n"] > 1 else None
        rows.append({"dataset": r["dataset"], "size": r["size"], "n": r["n"], "task": task.name,
                     "metric": task.metric, "value": value,
                     "diff_vs_n1": value - ref if value is not None and ref is not None else None})
    return rows
