"""Every registered synthetic task (mtp.tasks) in one table: per model, the task's headline metric from its
eval_<task>.json, and for n > 1 the difference to the n=1 model of the same size. Tasks with a section of
their own (polynomial, induction: mtp.report.synthetic) also have their paired intervals there; a task
registered without report code of its own shows here."""
from mtp.report.study import baseline, num, order
from mtp.tasks import TASKS


def metric(r, task):
    """r's value of the task's headline metric (its eval_<task>.json "metrics"), or None."""
    e = r.results[task.name]
    return num(e.metric(task.metric)) if e is not None else None


def task_rows(records):
    rows = []
    for r in sorted(records, key=order):
        if r.task not in TASKS:
            continue
        task = TASKS[r.task]
        value = metric(r, task)
        base = baseline(records, r)
        ref = metric(base, task) if base and r.n_heads > 1 else None
        rows.append({"dataset": r.dataset, "size": r.slot, "n": r.n_heads, "task": task.name,
                     "metric": task.metric, "value": value,
                     "diff_vs_n1": value - ref if value is not None and ref is not None else None})
    return rows
