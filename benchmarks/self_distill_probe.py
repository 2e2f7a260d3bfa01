"""What training the heads on the base model's own answers buys (issue #23: "what would close it"), untimed.

configs/smollm2.yaml trains SmolLM2's heads on the standard library's code, where they agree with head 1 on about
half the positions, but on HumanEval prompts in the chat template the instruct model writes a function, a closing
fence and English prose, and the heads' drafts are accepted far less often. This probe starts from a trained model
of that study and continues training its heads (trunk, head 1 and the unembedding frozen, as the study does) on the
base model's own greedy answers to MBPP's train-split problems (task ids 601-974, disjoint from the scored ones) in
the code benchmark's MBPP template:

  1. generate: greedy answers of the base model (head 1: the frozen trunk; no drafts), max_new tokens each;
  2. one token stream (prompt + answer + eod per problem), cut into windows of seq_len; the frozen trunk's states
     of every window computed once (cached: the heads' training then costs only the heads);
  3. train heads 2..n on the stream's own tokens ahead (they are the base model's greedy choice, by construction),
     softmax over the step's targets plus the stream's most frequent tokens (as train.loss_vocab);
  4. every `every` steps: acceptance per draft position and tokens per forward on the study's decode prompts
     (decode.prompts of the config: HumanEval in the chat template), batch 1, k = n - 1, with mtp's engine.

    python benchmarks/self_distill_probe.py <results>/config.yaml <dataset> <slot> <n> --out FILE.jsonl [--stream S.pt]
        [--head-type sequential] [--data-tokens N]
Prints and writes one JSON line per measurement (step, minutes since the start, train_minutes of the heads' steps
alone, acceptance, tokens per forward); the model folder is only read. --stream keeps the generated answers for a
later run. --head-type sequential replaces heads 2..n by fresh DeepSeek-V3 modules (trunk and head 1 kept), which read
the stream's tokens ahead; --data-tokens N trains on the study's own training data instead of generated answers.
"""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from mtp import checkpoint, config
from mtp.decoding import engine as D
from mtp.decoding import timing as DT
from mtp.evals.code import load_mbpp, render_prompt
from mtp.tokenizer import Tokenizer


def answers(model, tok, cfg, problems, max_new, batch_size):
    """Token ids of prompt + the base model's greedy answer + eod, per problem."""
    template = cfg["eval"]["code"]["prompt_templates"]["mbpp"]
    prompts = [tok.encode(render_prompt(p, template)) for p in problems]
    with torch.inference_mode():
        outs, _ = D.decode(model, prompts, max_new, tok.eod_id, draft_tokens=0, batch_size=batch_size)
    return [p + o + [tok.eod_id] for p, o in zip(prompts, outs)]


def trunk_states(model, windows):
    """The frozen trunk's output z (W, T, C) of each window (no grad): what the heads read."""
    cos, sin = model.rope(windows.shape[1])
    with torch.no_grad():  # not inference_mode: the heads' backward saves z
        return torch.cat([model.forward_trunk(windows[i:i + 8], cos, sin) for i in range(0, len(windows), 8)])


def head_loss(model, z, windows, n, cand):
    """Mean cross-entropy of heads 2..n (their targets: the window's tokens 2..n ahead) over the candidate tokens.
    Heads that read the tokens ahead (sequential) run in their chain from head 1 and read the window's tokens."""
    T = windows.shape[1] - n
    cos, sin = model.rope(T)
    if model.cfg.head_type == "sequential":
        ahead = [windows[:, j + 1:j + 1 + T] for j in range(n)]
        states = model.head_states(z[:, :T], cos, sin, ahead=ahead)[1:]
    else:
        states = model.head_states(z[:, :T], cos, sin, heads=list(range(1, n)))
    index = torch.full((model.cfg.vocab_size,), -1, dtype=torch.long)
    index[cand] = torch.arange(len(cand))
    loss = 0.0
    for j, h in zip(range(1, n), states):
        target = index[windows[:, j + 1:j + 1 + T]]  # head j+1 (0-based j) predicts the token j+1 ahead
        loss = loss + F.cross_entropy(model.logits(j, h, cand).flatten(0, 1), target.flatten())
    return loss / (n - 1)


def with_head_type(model, head_type):
    """The same trunk, head 1, embedding and unembedding; heads 2..n new, of `head_type` (initialised as the model
    initialises them)."""
    from dataclasses import replace

    from mtp.nn.model import MTPModel
    new = MTPModel(replace(model.cfg, head_type=head_type))
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("heads.") or k.startswith("heads.0.")}
    missing, unexpected = new.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith("heads.") and not k.startswith("heads.0.") for k in missing), missing
    return new


def acceptance(model, prompts, max_new, k):
    with torch.inference_mode():
        counts = D.acceptance_counts(model, prompts, max_new, None, k)
    drafts = sum(c["num_drafts"] for c in counts)
    per_pos = [sum(c["num_accepted_tokens_per_pos"][i] for c in counts) / drafts for i in range(k)]
    return per_pos, 1 + sum(c["num_accepted_tokens"] for c in counts) / drafts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("config", "dataset", "slot", "n"):
        ap.add_argument(name)
    ap.add_argument("--out", required=True)
    ap.add_argument("--problems", type=int, default=200, help="MBPP train-split problems answered")
    ap.add_argument("--max-new", type=int, default=160)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--vocab", type=int, default=4096, help="most frequent stream tokens in every step's softmax")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (untimed: 1 shares the machine best)")
    ap.add_argument("--stream", help="a .pt file of the generated token stream: read if it exists, else written")
    ap.add_argument("--data-tokens", type=int, help="train on the first N tokens of the study's own training data "
                    "(<data_dir>/train.bin: the heads' targets are the data's tokens) instead of generated answers")
    ap.add_argument("--head-type", help="replace heads 2..n by freshly initialised heads of this type (e.g. "
                    "sequential: DeepSeek-V3's modules, reading the tokens ahead); trunk and head 1 kept")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = config.load(a.config)
    entry = config.find_model(cfg, a.dataset, a.slot, int(a.n))
    model, payload = checkpoint.load_model(entry.dir)
    if a.head_type and a.head_type != model.cfg.head_type:
        model = with_head_type(model, a.head_type)
    model.eval()
    n = model.cfg.n_heads
    tok = Tokenizer.load(f"{payload['data_dir']}/tokenizer.json")
    prompts = DT.study_prompts(cfg, payload["data_dir"])
    out, t0 = open(a.out, "w"), time.perf_counter()

    def record(step, **extra):
        per_pos, tpf = acceptance(model, prompts, cfg["decode"]["max_new_tokens"], n - 1)
        row = {"step": step, "minutes": (time.perf_counter() - t0) / 60, "prompts": cfg["decode"]["prompts"],
               "accept_rate_per_pos": per_pos, "tokens_per_forward": tpf, **extra}
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(row, flush=True)

    record(0, phase="the study's heads")
    mbpp = load_mbpp()
    problems = [mbpp[i] for i in sorted(mbpp) if 601 <= i <= 974][:a.problems]
    if a.data_tokens:
        from mtp.data import TokenData
        tokens = TokenData(payload["data_dir"], "train").tokens
        stream = torch.from_numpy(tokens[:a.data_tokens].astype("int64"))
    elif a.stream and os.path.exists(a.stream):
        stream = torch.load(a.stream)
    else:
        stream = torch.tensor([t for s in answers(model, tok, cfg, problems, a.max_new, 16) for t in s])
        if a.stream:
            torch.save(stream, a.stream)
    W = len(stream) // (a.seq_len + n)
    windows = stream[:W * (a.seq_len + n)].view(W, a.seq_len + n)
    z = trunk_states(model, windows)
    cand_base = torch.bincount(stream, minlength=model.cfg.vocab_size).topk(a.vocab).indices
    source = f"train.bin[:{a.data_tokens}]" if a.data_tokens else f"{len(problems)} MBPP answers"
    out.write(json.dumps({"generated_tokens": len(stream), "windows": W, "source": source,
                          "minutes_to_generate_and_cache": (time.perf_counter() - t0) / 60}) + "\n")
    params = [p for h in model.heads[1:] for p in h.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    train_s = 0.0  # the heads' training steps alone (no generation, caching or measuring)
    for step in range(1, a.steps + 1):
        t_step = time.perf_counter()
        rows = torch.randint(0, W, (a.batch,))
        cand = torch.unique(torch.cat([cand_base, windows[rows].flatten()]))
        model.train()
        loss = head_loss(model, z[rows], windows[rows], n, cand)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        model.eval()
        train_s += time.perf_counter() - t_step
        if step % a.every == 0:
            record(step, loss=float(loss), train_minutes=train_s / 60,
                   phase="heads trained on the stream (--data-tokens: the study's data; else the base model's answers)")


if __name__ == "__main__":
    main()
