"""vLLM engines side by side, timed in interleaved rounds (the measuring half of `mtp vllm`).

Every configuration gets its own `LLM()` (its own engine-core and worker processes); they are started
STARTING_TOGETHER at a time (start_all) and stay alive together, so that every
configuration can be timed once per round (mtp.measure.interleaved) and a change in machine load
hits them all alike. At each batch size: one untimed warm-up batch per engine, then `rounds` rounds.

Idle engines: an idle vLLM 0.32 engine blocks (engine core on a queue, worker on a zmq poll) and
uses ~0.01 CPU-s per second, except that its worker busy-polls the shared-memory queue (with
sched_yield) for 1 s after its last read (shm_broadcast.SpinCondition, busy_loop_s = 1; no setting
changes it). So each timed call starts SPIN_TAIL_S after the previous one ended (outside the timing),
and the CPU time the other engines used during each timed call is recorded (other_engines_cpu_s).
Memory: each engine holds ~1.5 GB resident (two processes with torch loaded).

Speculative counters: vLLM's Prometheus registry is process-global and each new engine unregisters
the previous engine's metrics, so `llm.get_metrics()` cannot tell engines apart. Each engine gets
its own SpecTap among its stat loggers instead: it sums the SchedulerStats.spec_decoding_stats that
vLLM's Prometheus logger counts (the same numbers, per engine).
"""
import contextlib
import gc
import os
import statistics
import threading
import time
from dataclasses import dataclass, field

from mtp import UserError
from mtp import measure as M
from mtp.decoding.engine import COUNTERS  # vLLM's counter names, kept by the native engine too

# Thread counts that vLLM's CPU worker must not inherit: vLLM pins the worker to its own cores and sets
# its OMP_NUM_THREADS to their number (VLLM_CPU_OMP_THREADS_BIND=auto; on 2 cores: CPU 0, one thread),
# but MKL_NUM_THREADS and the like (Snakemake sets them to a rule's `threads`) override that for BLAS calls:
# two MKL threads spinning on one pinned core made nospec decode ~45x slower (7 vs 330 tokens/s
# measured on the tiny study; OPENBLAS_NUM_THREADS=2: ~2x), while ngram ran at full speed.
BLAS_THREAD_VARS = ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                    "NUMEXPR_NUM_THREADS")
SPIN_TAIL_S = 1.1  # > the 1 s an idle vLLM worker keeps busy-polling after its last step
SHUTDOWN_S = 15.0  # an engine core exits ~5 s after SIGTERM; vLLM's default grace (5 s) kills it just before


def clear_blas_threads(environ=os.environ):
    """Remove BLAS_THREAD_VARS from the environment vLLM's processes inherit -> {var: removed value}."""
    return {k: environ.pop(k) for k in BLAS_THREAD_VARS if k in environ}


def engine_args(hf, model_cfg, max_model_len, max_batch, enforce_eager):
    """LLM() arguments shared by every configuration."""
    per_token = 2 * (model_cfg.n_layers + 1) * model_cfg.dim * 4  # K and V, float32, every layer, + slack
    kv_bytes = max(64 << 20, 2 * per_token * max_model_len * max_batch)
    return dict(model=hf, tokenizer=hf, dtype="float32", seed=0, max_model_len=max_model_len,
                max_num_seqs=max(max_batch, 1), kv_cache_memory_bytes=kv_bytes, enable_prefix_caching=False,
                async_scheduling=False, enforce_eager=enforce_eager, disable_log_stats=False)


class SpecTap:
    """A stat logger (vLLM's StatLoggerBase interface) summing one engine's speculative-decoding stats."""

    def __init__(self):
        self.totals = {"num_drafts": 0, "num_draft_tokens": 0, "num_accepted_tokens": 0,
                       "num_accepted_tokens_per_pos": []}

    def record(self, scheduler_stats, iteration_stats=None, mm_cache_stats=None, engine_idx=0):
        s = getattr(scheduler_stats, "spec_decoding_stats", None)
        if s is None:
            return
        for k in COUNTERS[:3]:
            self.totals[k] += getattr(s, k)
        self.totals["num_accepted_tokens_per_pos"] = _add_lists(self.totals["num_accepted_tokens_per_pos"],
                                                                list(s.num_accepted_tokens_per_pos))

    def snapshot(self):
        return {**self.totals, "num_accepted_tokens_per_pos": list(self.totals["num_accepted_tokens_per_pos"])}

    def log(self):
        pass

    def log_engine_initialized(self):
        pass

    def record_sleep_state(self, *args, **kwargs):
        pass

    def record_admission_rejection(self, *args, **kwargs):
        pass


def _add_lists(a, b):
    a, b = a + [0] * (len(b) - len(a)), b + [0] * (len(a) - len(b))
    return [x + y for x, y in zip(a, b)]


def minus(after, before):
    """Counter differences (after - before), per draft position too."""
    out = {k: after[k] - before[k] for k in COUNTERS[:3]}
    out["num_accepted_tokens_per_pos"] = _add_lists(after["num_accepted_tokens_per_pos"],
                                                    [-x for x in before["num_accepted_tokens_per_pos"]])
    return out


@dataclass
class Engine:
    name: str
    llm: object
    tap: SpecTap
    startup_s: float
    procs: list = field(default_factory=list)  # its engine-core and worker processes (psutil)

    def cpu_s(self):
        total = 0.0
        for p in self.procs:
            with contextlib.suppress(Exception):  # a process that is gone uses no more CPU
                t = p.cpu_times()
                total += t.user + t.system
        return total


@contextlib.contextmanager
def alive():
    """An Engines dict {name: Engine} to fill with start_all(); on exit (errors and SIGTERM too) every engine in it
    is shut down, all at once: an engine core takes ~5 s to exit on SIGTERM (its worker ~2 s, then its teardown),
    so shutting six down one after another cost half a minute."""
    engines = Engines()
    try:
        yield engines
    finally:
        shutdown(list(engines.values()))
        engines.starters.shutdown()


class Engines(dict):
    """{name: Engine}, with the threads that start them (start_all). The threads live until the engines are shut
    down: vLLM's processes die with the thread that started them (PR_SET_PDEATHSIG, mtp.serving.plugin)."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor
        super().__init__()
        self.starters = ThreadPoolExecutor(STARTING_TOGETHER)


def start(vllm, name, **kwargs):
    """-> an Engine: `vllm.LLM(**kwargs)` with its start-up time, a SpecTap among its stat loggers and its
    processes. Put it into an alive() dict at once, so that it is shut down."""
    t0 = time.perf_counter()
    llm = vllm.LLM(**kwargs)
    engine = Engine(name, llm, SpecTap(), time.perf_counter() - t0)
    manager = getattr(llm.llm_engine, "logger_manager", None)
    try:
        engine.procs = engine_processes(llm)
    except AttributeError:
        manager = None
    if manager is None or not isinstance(getattr(manager, "stat_loggers", None), list):
        shutdown([engine])
        raise UserError(f"vLLM {vllm.__version__}: no per-engine stat loggers or engine processes to read "
                        f"speculative counters and CPU time from (mtp/serving/timing.py supports vLLM 0.32)")
    manager.stat_loggers.append(engine.tap)
    return engine


def engine_processes(llm):
    """The engine-core process(es) of an LLM and their workers (psutil), from vLLM 0.32's process manager."""
    import psutil
    cores = [psutil.Process(p.pid) for p in llm.llm_engine.engine_core.resources.engine_manager.processes]
    return cores + [c for p in cores for c in p.children(recursive=True)]


_LOGGERS_LOCK = threading.Lock()


def one_stat_logger_manager_at_a_time():
    """vLLM 0.32 makes an engine's stat loggers once its engine core is up, and its Prometheus logger first
    unregisters every vllm: metric of the process-global registry, then registers its own: two engines doing so at
    once can unregister a metric twice (KeyError) or register one twice (ValueError). Wrap StatLoggerManager's
    __init__ in a lock (once per process)."""
    from vllm.v1.metrics.loggers import StatLoggerManager
    init = StatLoggerManager.__init__
    if getattr(init, "mtp_locked", False):
        return

    def locked(self, *args, **kwargs):
        with _LOGGERS_LOCK:
            init(self, *args, **kwargs)
    locked.mtp_locked = True
    StatLoggerManager.__init__ = locked


STARTING_TOGETHER = 2  # each start-up spawns two processes that import torch and vLLM, one after the other: two
# start-ups side by side took 58 s for four engines where one at a time took 79 s (2 cores, AMD EPYC)


def start_all(vllm, engines, confs, log=print):
    """Start every (name, LLM kwargs) of confs, STARTING_TOGETHER at a time (on the alive() dict's starter threads),
    into the alive() dict `engines` as each comes up (so that all are shut down, even when another fails); the first
    failure is raised once none is starting. What vLLM 0.32 keeps process-wide is not touched by two start-ups at
    once: our plugin is registered before (mtp.stages.vllm.import_vllm), and its stat loggers are made one at a time
    (one_stat_logger_manager_at_a_time)."""
    one_stat_logger_manager_at_a_time()

    def one(conf):
        name, kwargs = conf
        log(f"starting {name} ...")
        engines[name] = start(vllm, name, **kwargs)

    futures = [engines.starters.submit(one, c) for c in confs]
    for f in futures:
        f.exception()  # waits
    engines.update({name: engines.pop(name) for name, _ in confs if name in engines})  # confs' order: the rounds'
    for f in futures:
        f.result()


def shutdown(engines):
    """Shut the engines' processes down side by side (SHUTDOWN_S each, then vLLM kills what is left)."""
    from concurrent.futures import ThreadPoolExecutor
    if engines:
        with ThreadPoolExecutor(len(engines)) as pool:
            list(pool.map(lambda e: e.llm.llm_engine.engine_core.shutdown(timeout=SHUTDOWN_S), engines))
    for e in engines:
        e.llm = None
    gc.collect()


def generator(vllm, max_new_tokens):
    """-> gen(llm, prompts) -> token ids of greedy continuations, one generate call."""
    sp = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens, ignore_eos=True, detokenize=False)

    def gen(llm, batch):
        outs = llm.generate([{"prompt_token_ids": p} for p in batch], sp, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]
    return gen


def decode_batches(engine, gen, prompts, bs):
    """All prompts in consecutive batches of bs -> [(token ids of each of the batch's prompts, the batch's
    counters)], in order."""
    out = []
    for lo in range(0, len(prompts), bs):
        before = engine.tap.snapshot()
        toks = gen(engine.llm, prompts[lo:lo + bs])
        out.append((toks, minus(engine.tap.snapshot(), before)))
    return out


def per_prompt(batches):
    """decode_batches at batch size 1 -> [{"tokens", counters...}] per prompt."""
    return [{"tokens": toks[0], **counts} for toks, counts in batches]


def decode_alone(engine, gen, prompts):
    """Each prompt alone (untimed) -> per_prompt (for a study without batch size 1; with it, time_batch_size's
    first round gives the same)."""
    return per_prompt(decode_batches(engine, gen, prompts, 1))


def time_batch_size(engines, gen, prompts, bs, rounds):
    """Every engine once per round at batch size bs (all prompts, in consecutive batches of bs).
    -> {name: row} (summarize_batch); counters are summed over the rounds. At bs = 1 each row also carries
    "per_prompt": each prompt's tokens and counters in the first round (what decode_alone gives; every
    batch's counters are read in every round, so the engines are timed alike)."""
    for e in engines.values():
        gen(e.llm, prompts[:bs])  # warm-up at this batch shape
    outs, cpu = {}, {name: {"own": 0.0, "others": 0.0} for name in engines}
    state, alone = {}, {}

    def call(e):
        def fn():
            state["name"] = e.name
            batches = decode_batches(e, gen, prompts, bs)
            outs[e.name] = [o for toks, _ in batches for o in toks]
            alone.setdefault(e.name, batches)  # the first round's
        return fn

    def before():
        time.sleep(SPIN_TAIL_S)  # the previous engine's worker stops busy-polling
        state["cpu"] = {name: e.cpu_s() for name, e in engines.items()}

    def after():
        used = {name: e.cpu_s() - state["cpu"][name] for name, e in engines.items()}
        cpu[state["name"]]["own"] += used[state["name"]]
        cpu[state["name"]]["others"] += sum(v for name, v in used.items() if name != state["name"])

    start = {name: e.tap.snapshot() for name, e in engines.items()}
    times = M.interleaved({name: call(e) for name, e in engines.items()}, rounds, warmup=0,
                          before=before, after=after)
    counts = {name: minus(e.tap.snapshot(), start[name]) for name, e in engines.items()}
    rows = summarize_batch(bs, times, outs, counts, cpu)
    if bs == 1:
        for name, row in rows.items():
            row["per_prompt"] = per_prompt(alone[name])
    return rows


def summarize_batch(bs, times, outs, counts, cpu=None, reference="nospec"):
    """One batch size: {name: seconds per round}, outputs and counters summed over the rounds ->
    {name: row}: tokens/s median/min/max over rounds (mtp.measure.rate_summary), acceptance, and for
    every configuration but the reference: speedup = median of the per-round tokens/s ratios against
    the reference, speedup_spread = their {min, max, spread, unstable} (mtp.measure.ratio)."""
    rows = {}
    for name, secs in times.items():
        tokens = sum(len(o) for o in outs[name])
        row = {"batch_size": bs, **M.rate_summary(tokens, secs), "new_tokens": tokens, "repeats": len(secs)}
        row["tokens_per_s_stdev"] = statistics.stdev(row["tokens_per_s_all"]) if len(secs) > 1 else 0.0
        row.update({"outputs": outs[name], **counts[name], **acceptance(counts[name])})
        if cpu:
            row.update({"cpu_s": cpu[name]["own"], "other_engines_cpu_s": cpu[name]["others"]})
        rows[name] = row
    ref = rows[reference]["tokens_per_s_all"]
    for name, row in rows.items():
        if name == reference:
            row.update(speedup=1.0, speedup_spread=None)
            continue
        r = M.ratio(row["tokens_per_s_all"], ref)
        row.update(speedup=r["median"], speedup_all=r["all"],
                   speedup_spread={k: r[k] for k in ("min", "max", "spread", "unstable")})
    return rows


def acceptance(counts):
    """acceptance_rate = accepted / drafted tokens; mean_acceptance_length = 1 + accepted / drafts
    (tokens per target forward); acceptance_rate_per_pos[j] = accepted at position j / drafts."""
    d, acc = counts["num_drafts"], counts["num_accepted_tokens"]
    return {"acceptance_rate": acc / counts["num_draft_tokens"] if counts["num_draft_tokens"] else None,
            "mean_acceptance_length": 1 + acc / d if d else None,
            "acceptance_rate_per_pos": [a / d for a in counts["num_accepted_tokens_per_pos"]] if d else []}
