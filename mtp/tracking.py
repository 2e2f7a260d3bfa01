"""MLflow behind one small interface. The only module of mtp that imports mlflow.

One experiment per study, one parent run per results directory (created by `init_tracking`, recorded in
<results>/mlflow/parent.json), one child run per job, tagged with stage, dataset, size, n, seed, config digest
and git commit.
"""
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from mtp import UserError
from mtp.io import digest, out_of_space, read_json, write_json

DEFAULT_URI = "sqlite:///mlflow.db"
# a study is model training, not a GenAI app: MLflow's own experiment tag for that (values from its UI code; its
# assistant reads it). Set when the experiment is created or first used (init, `mtp ui`), never over a chosen value
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# MLflow 3.17's UI picks its GenAI (traces overview) or model-training (runs table) view from this URL parameter
# (else the browser's last choice, else GenAI), not from the tag: `mtp ui` prints the experiment's URL with it
UI_VIEW = "workflowType=machine_learning"


def uri(cfg):
    """MLFLOW_TRACKING_URI > config tracking.uri > sqlite:///mlflow.db in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg["tracking"]["uri"] or DEFAULT_URI


def _mlflow(cfg):
    import logging

    import mlflow
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # the store logs its database errors with a traceback; _retry turns them into one clear line
    logging.getLogger("mlflow.store").setLevel(logging.CRITICAL)
    user = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri(cfg))
    if user is None:  # set_tracking_uri also exports MLFLOW_TRACKING_URI, which would then beat the next config's uri
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:  # open (or create) the store here, so that a bad URI or a damaged database is one clear error
        _retry(mlflow.MlflowClient, "open the tracking store")
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - mlflow and sqlalchemy raise many kinds
        raise UserError(f"tracking.uri: cannot open the MLflow store {uri(cfg)} ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0][:160]}); fix tracking.uri / MLFLOW_TRACKING_URI, or move a "
                        f"damaged database away") from None
    return mlflow


def _retry(fn, what, tries=8):
    """Run fn(); retry transient store errors (SQLite 'database is locked'); clear error if the server is down."""
    for attempt in range(tries):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - mlflow raises many kinds; we re-raise below
            text = str(e)
            if "locked" in text and attempt < tries - 1:
                time.sleep(0.2 * 2 ** attempt)
                continue
            if any(s in text for s in ("Connection refused", "Max retries exceeded", "Failed to establish")):
                raise UserError(f"MLflow tracking server unreachable while trying to {what} ({text.splitlines()[0][:160]}); "
                                f"start it or unset MLFLOW_TRACKING_URI") from None
            full = out_of_space(e)
            if full:
                raise UserError(f"MLflow could not {what}: {full}; free space where the store and its artifacts live "
                                f"and rerun") from None
            if "sqlite3.OperationalError" in text:  # disk full, I/O error, read-only: the store's surroundings
                reason = text.split("sqlite3.OperationalError)", 1)[1].strip().splitlines()[0][:160]
                raise UserError(f"MLflow could not {what}: SQLite says '{reason}' (a full disk, a read-only or failing "
                                f"one); fix that and rerun") from None
            raise


def parent_file(cfg):
    return Path(cfg["results"]) / "mlflow" / "parent.json"


def git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def init(cfg):
    """Create (or upgrade) the store, the experiment and this study's parent run. Run alone, before any job."""
    mlflow = _mlflow(cfg)
    client = mlflow.MlflowClient()
    results = str(Path(cfg["results"]).resolve())

    def setup():
        exp = client.get_experiment_by_name(cfg["tracking"]["experiment"])
        exp_id = exp.experiment_id if exp else client.create_experiment(cfg["tracking"]["experiment"])
        if EXPERIMENT_KIND[0] not in (exp.tags if exp else {}):  # new, or made before mtp tagged experiments
            client.set_experiment_tag(exp_id, *EXPERIMENT_KIND)
        found = client.search_runs([exp_id], filter_string=f"tags.`mtp.results` = '{results}' and tags.`mtp.role` = 'study'",
                                   max_results=1)
        if found:
            return exp_id, found[0].info.run_id
        run = client.create_run(exp_id, run_name=f"study {Path(results).name}",
                                tags={"mtp.role": "study", "mtp.results": results, "mtp.git_commit": git_commit()})
        client.set_terminated(run.info.run_id, "FINISHED")  # a container for the jobs' runs, never left RUNNING
        return exp_id, run.info.run_id

    exp_id, run_id = _retry(setup, "create the study's parent run")
    _retry(lambda: client.set_tag(run_id, "mtp.config_digest", digest(cfg)), "tag the parent run")
    info = {"tracking_uri": uri(cfg), "experiment_id": exp_id, "parent_run_id": run_id, "results": results}
    write_json(parent_file(cfg), info)
    return info


def _parent(cfg):
    path = parent_file(cfg)
    if not path.exists():
        return init(cfg)  # a stage run by hand, outside Snakemake
    try:
        info = read_json(path)
    except UserError:
        return init(cfg)  # damaged by hand: init finds the study's parent run again and rewrites the file
    if not isinstance(info, dict) or not {"tracking_uri", "experiment_id", "parent_run_id"} <= info.keys():
        return init(cfg)
    if info["tracking_uri"] != uri(cfg):
        return init(cfg)  # the user pointed this study at another store
    return info


class Run:
    """A child run: what stages call to record their work."""

    def __init__(self, mlflow, run_id):
        self._mlflow, self._client, self.run_id = mlflow, mlflow.MlflowClient(), run_id

    def log(self, metrics, step=None):
        metrics = {k: float(v) for k, v in metrics.items() if v is not None}
        if metrics:
            ts = int(time.time() * 1000)
            from mlflow.entities import Metric
            batch = [Metric(k, v, ts, step or 0) for k, v in metrics.items()]
            _retry(lambda: self._client.log_batch(self.run_id, metrics=batch), "log metrics")

    def params(self, params):
        from mlflow.entities import Param
        flat = _flatten(params)
        items = [Param(k, str(v)[:6000]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            _retry(lambda: self._client.log_batch(self.run_id, params=items[i:i + 100]), "log params")

    def tags(self, tags):
        for k, v in tags.items():
            _retry(lambda: self._client.set_tag(self.run_id, k, str(v)), "set a tag")

    def artifact(self, path, folder=None):
        _retry(lambda: self._client.log_artifact(self.run_id, str(path), folder), f"log artifact {path}")

    def artifacts(self, path, folder=None):
        _retry(lambda: self._client.log_artifacts(self.run_id, str(path), folder), f"log artifacts {path}")

    def dataset(self, name, source, data_digest, context="training"):
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        entity = MetaDataset(source=HTTPDatasetSource(url=str(source)), name=name, digest=data_digest[:36])._to_mlflow_entity()
        inputs = [DatasetInput(entity, [InputTag("mlflow.data.context", context)])]
        _retry(lambda: self._client.log_inputs(self.run_id, datasets=inputs), "log the dataset input")


    def logged_model(self, name, metrics, params, files=()):
        """An MLflow 3 logged model made by this run (the UI's Models tab): `params` (flattened), `metrics` linked to
        both the run and the model, `files` (small: model.json, metrics.json) as its artifacts. -> its model id;
        `mtp export` later adds the Hugging Face export to it (log_hf_model)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        mlflow, run = self._mlflow, self._client.get_run(self.run_id)

        def create():
            lm = mlflow.initialize_logged_model(
                name=name, source_run_id=self.run_id, model_type="mtp", experiment_id=run.info.experiment_id,
                params={k: str(v)[:6000] for k, v in _flatten(params).items()},
                tags={k: v for k, v in run.data.tags.items() if k.startswith("mtp.")})
            repo = get_artifact_repository(lm.artifact_location)
            for f in files:
                repo.log_artifact(str(f))
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, run_id=self.run_id, model_id=lm.model_id)
            mlflow.finalize_logged_model(lm.model_id, "READY")
            return lm.model_id
        return _retry(create, f"log the model {name}")


def log_hf_model(cfg, model_id, hf_dir):
    """Add the HF export to logged model `model_id` (transformers flavour: head 1); None where it is not in this store."""
    mlflow, ids = _mlflow(cfg), [_parent(cfg)["experiment_id"]]
    if not mlflow.search_logged_models(ids, filter_string=f"model_id = '{model_id}'", output_format="list"):
        return print(f"note: logged model {model_id} is not in {mlflow.get_tracking_uri()}: export not logged")
    import mlflow.transformers
    from transformers import AutoModelForCausalLM as Model, AutoTokenizer as Tok
    parts = {"model": Model.from_pretrained(hf_dir), "tokenizer": Tok.from_pretrained(hf_dir)}
    kw = {"task": "text-generation", "model_id": model_id, "pip_requirements": ["torch", "transformers"]}
    return _retry(lambda: mlflow.transformers.log_model(parts, **kw), f"log {hf_dir} to the logged model {model_id}")


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


@contextlib.contextmanager
def child_run(cfg, stage, **keys):
    """Open a child run of the study's parent for one job; mark it FINISHED, FAILED or KILLED.

    keys (dataset, size, n, ...) become tags; an earlier run of the same job is tagged
    `mtp.superseded` (and marked KILLED if it was left RUNNING by a killed process).
    """
    mlflow = _mlflow(cfg)
    client = mlflow.MlflowClient()
    parent = _parent(cfg)
    job = digest({"stage": stage, **keys})
    tags = {"mlflow.parentRunId": parent["parent_run_id"], "mtp.stage": stage, "mtp.job": job,
            "mtp.config_digest": digest(cfg), "mtp.git_commit": git_commit(),
            **{f"mtp.{k}": str(v) for k, v in keys.items()}}
    name = " ".join([stage] + [str(v) for v in keys.values()])

    def start():
        older = client.search_runs([parent["experiment_id"]],
                                   filter_string=f"tags.`mtp.job` = '{job}' and tags.`mlflow.parentRunId` = '{parent['parent_run_id']}'")
        run = client.create_run(parent["experiment_id"], run_name=name, tags=tags)
        for r in older:
            client.set_tag(r.info.run_id, "mtp.superseded", run.info.run_id)
            if r.info.status == "RUNNING":
                client.set_terminated(r.info.run_id, "KILLED")
        return run.info.run_id

    run_id = _retry(start, f"open the {stage} run")
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_killed)  # Snakemake stops jobs with SIGTERM
    status = "FAILED"
    try:
        yield Run(mlflow, run_id)
        status = "FINISHED"
    except (KeyboardInterrupt, _Killed):
        status = "KILLED"
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        _retry(lambda: client.set_terminated(run_id, status), "close the run")


class _Killed(BaseException):
    pass


def _raise_killed(signum, frame):
    raise _Killed(f"killed by signal {signum}")


def log_parent_artifacts(cfg, path, folder=None):
    """Log a folder (e.g. the report) to the study's parent run."""
    mlflow = _mlflow(cfg)
    parent = _parent(cfg)
    _retry(lambda: mlflow.MlflowClient().log_artifacts(parent["parent_run_id"], str(path), folder), "log the report")


def find_run(cfg, stage, **keys):
    """Run id of the latest non-superseded child run for this job, or None."""
    mlflow = _mlflow(cfg)
    parent = _parent(cfg)
    job = digest({"stage": stage, **keys})
    runs = _retry(lambda: mlflow.MlflowClient().search_runs(
        [parent["experiment_id"]], filter_string=f"tags.`mtp.job` = '{job}'", order_by=["attributes.start_time DESC"],
        max_results=1), "find a run")
    return runs[0].info.run_id if runs else None


def ui(cfg, port=5000):
    """A light MLflow UI on 127.0.0.1 (one worker, job execution off: ~0.5 GB instead of ~3.5 GB).

    The server runs in its own session (process group): Ctrl-C, SIGTERM or SIGHUP reach mtp only, which then
    stops the server and every process it started, waits for them, and returns 128 + the signal number.
    """
    import sys
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri(cfg), "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    base = f"http://127.0.0.1:{port}"
    print(f"starting the MLflow UI on {base}  (store: {uri(cfg)}; Ctrl-C to stop)", flush=True)
    stopped = []

    def stop(signum, frame):
        stopped.append(signum)
        raise _Killed(f"killed by signal {signum}")

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.getsignal(s) for s in signals}
    proc = None
    try:
        for s in signals:
            signal.signal(s, stop)
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        url = _ui_url(proc, base, cfg["tracking"]["experiment"])
        if url:
            print(f"MLflow UI at {url}", flush=True)
        return proc.wait()
    except _Killed:
        print("mtp ui: stopping the MLflow UI", file=sys.stderr, flush=True)
        return 128 + stopped[0]
    finally:
        for s in signals:  # a second Ctrl-C must not leave the server half stopped; _stop_group is bounded
            signal.signal(s, signal.SIG_IGN)
        if proc is not None:
            _stop_group(proc)
        for s in signals:
            signal.signal(s, previous[s])


def _ui_url(proc, base, experiment, timeout=300):
    """Wait until the server answers; tag the study's experiment if needed; its URL in the runs view, else None."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5):
                break
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)
    else:
        return None  # the server exited (port taken, bad store): its own message says why
    api = f"{base}/api/2.0/mlflow/experiments"
    try:
        query = urllib.parse.urlencode({"experiment_name": experiment})
        with urllib.request.urlopen(f"{api}/get-by-name?{query}", timeout=30) as r:
            exp = json.load(r)["experiment"]
        if EXPERIMENT_KIND[0] not in {t["key"] for t in exp.get("tags", [])}:  # a study from before this tag
            body = json.dumps({"experiment_id": exp["experiment_id"], "key": EXPERIMENT_KIND[0],
                               "value": EXPERIMENT_KIND[1]}).encode()
            req = urllib.request.Request(f"{api}/set-experiment-tag", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=30).close()
        return f"{base}/#/experiments/{exp['experiment_id']}?{UI_VIEW}"
    except urllib.error.HTTPError as e:
        if e.code == 404:  # no study in this store yet
            print(f"(experiment {experiment!r} is not in this store yet: `mtp init` or the workflow creates it)",
                  flush=True)
        return f"{base}/#/experiments?{UI_VIEW}"
    except (OSError, ValueError, KeyError):
        return f"{base}/#/experiments?{UI_VIEW}"


def _group_alive(pgid):
    """Whether a process (not a zombie) of process group pgid is left."""
    procfs = Path("/proc")
    if not procfs.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    for stat in procfs.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _stop_group(proc, grace=10.0):
    """SIGTERM the process group that proc leads, wait for all of it; SIGKILL what is left after grace seconds."""
    for sig, seconds in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break  # nothing of it is left
        deadline = time.monotonic() + seconds
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            proc.poll()  # reap the leader, so that it does not linger as a zombie
            time.sleep(0.1)
        if not _group_alive(proc.pid):
            break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
