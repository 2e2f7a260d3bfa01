"""vLLM runs: vllm.json (mtp/stages/vllm.py) read through its "configs": nospec, heads_k<k> (our heads drafting
k tokens) and the baselines of mtp/serving/baselines.py (ngram, draft, ...), each with "per_batch" rows (tokens_per_s,
speedup vs nospec, mean_acceptance_length = tokens per forward, acceptance_rate_per_pos) and "per_prompt"
counters (each kept prompt alone), and its "crosscheck" against the native engine; read as mtp.result_types.Vllm. Every figure is of the kept
prompts: those whose native greedy continuation is degenerate were dropped by the stage ("quality", mtp.measure).
Missing keys leave blanks. The rows join the speculative section (mtp.report.speculative).
"""
from mtp.report.study import num, speedup_spread
from mtp.serving.baselines import method_of


def vllm_runs(v):
    """A vllm.json (mtp.result_types.Vllm) -> rows {method, k, batch_size, tokens_per_s, speedup, spread,
    tokens_per_forward, accept_rate_per_pos}, one per configuration and batch size; method: none, mtp (our heads),
    or the baseline's (mtp.serving.baselines.method_of)."""
    rows = []
    for c in v.configs if v is not None else []:
        method = method_of(c.name or "")
        for b in c.per_batch:
            tpf = num(b.mean_acceptance_length)  # 1 + accepted / drafts: tokens per target forward
            if tpf is None and num(b.num_drafts) and num(b.num_accepted_tokens) is not None:
                tpf = 1 + b.num_accepted_tokens / b.num_drafts
            rows.append({"method": method, "k": 0 if method == "none" else c.k,
                         "batch_size": b.batch_size, "tokens_per_s": num(b.tokens_per_s),
                         "speedup": num(b.speedup), "spread": speedup_spread(b),
                         "tokens_per_forward": 1.0 if method == "none" else tpf,
                         "accept_rate_per_pos": b.acceptance_rate_per_pos})
    return rows


def heads_per_prompt(v):
    """A vllm.json -> {k: [(tokens, forwards) per kept prompt]} of our heads (heads_k<k>, each prompt decoded alone):
    forwards = num_drafts (target forwards after the prefill), tokens = num_drafts + num_accepted_tokens."""
    out = {}
    for c in v.configs if v is not None else []:
        if method_of(c.name or "") != "mtp" or not c.per_prompt:
            continue
        if all(num(p.num_drafts) is not None and num(p.num_accepted_tokens) is not None for p in c.per_prompt):
            out[c.k] = [(p.num_drafts + p.num_accepted_tokens, p.num_drafts) for p in c.per_prompt]
    return out


def crosscheck_ok(v):
    """Whether vLLM's output matched native greedy in every configuration of a vllm.json; None without a check."""
    ok = v.crosscheck.ok if v is not None and v.crosscheck is not None else None
    return ok if isinstance(ok, bool) else None


def crosschecks(records):
    """Per model with a vllm.json that has one: whether vLLM's output matched native greedy in every configuration."""
    checks = [crosscheck_ok(r.results["vllm"]) for r in records]
    return [c for c in checks if c is not None]
