"""Probe: does vLLM 0.32 (CPU) serve a MiMo-layout MTP checkpoint with method="mtp", k=3,
and which MTP layer drafts which position?

Run:  /work/main/.venv/bin/python /tmp/mimo_probe/probe.py            (all variants, one engine at a time)
      /work/main/.venv/bin/python /tmp/mimo_probe/probe.py --variant A (one variant, in this process)

Variants (checkpoints written to /tmp/mimo_probe/ckpt_<variant>/):
  A  target final norm weight = 0  -> target logits all 0 -> greedy target token is always 0.
     MTP layer 0 final_layernorm = 0 (draft logits 0 -> draft token 0 = always correct),
     MTP layers 1, 2 final_layernorm random (their drafts are random tokens = almost always wrong).
     If layer j drafts position j: accepted per pos ~ [N, 0, 0].  If layer 0 is reused: [N, N, N].
  B  the mirror: MTP layer 0 random (wrong), layers 1, 2 zero final norm (right).
     Layer j for position j: [0, 0, 0] (pos 1 never reached); layer 0 reused: [0, 0, 0] too, but with
     hooks we see which layer ran.  (A alone decides; B is the control that layer 0 really matters.)
  R  all weights random (plain smoke test of the chain, hook log of spec_step_idx / layer calls).
Hooks (engine runs in-process, VLLM_ENABLE_V1_MULTIPROCESSING=0): count calls of each
MiMoMultiTokenPredictorLayer (by its index) and record spec_step_idx passed to MiMoMTP.forward.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CFG = dict(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
           intermediate_size=256, vocab_size=256, num_nextn_predict_layers=3)


def mtp_key_names(j):
    p = f"model.mtp_layers.{j}."
    return [p + n for n in (
        "token_layernorm.weight", "hidden_layernorm.weight", "input_proj.weight",
        "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
        "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
        "input_layernorm.weight", "post_attention_layernorm.weight", "final_layernorm.weight")]


def write_ckpt(path, variant, seed=0):
    import torch
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(seed)
    d, f, V = CFG["hidden_size"], CFG["intermediate_size"], CFG["vocab_size"]

    def r(*shape, s=0.05):
        return (torch.randn(*shape, generator=g) * s).contiguous()

    def ones():
        return torch.ones(d) + r(d, s=0.1)

    def block(p, sd):
        for n in ("q", "k", "v"):
            sd[f"{p}self_attn.{n}_proj.weight"] = r(d, d)
            sd[f"{p}self_attn.{n}_proj.bias"] = r(d)
        sd[f"{p}self_attn.o_proj.weight"] = r(d, d)
        sd[f"{p}mlp.gate_proj.weight"] = r(f, d)
        sd[f"{p}mlp.up_proj.weight"] = r(f, d)
        sd[f"{p}mlp.down_proj.weight"] = r(d, f)
        sd[f"{p}input_layernorm.weight"] = ones()
        sd[f"{p}post_attention_layernorm.weight"] = ones()

    sd = {"model.embed_tokens.weight": r(V, d, s=1.0), "lm_head.weight": r(V, d, s=1.0)}
    for i in range(CFG["num_hidden_layers"]):
        block(f"model.layers.{i}.", sd)
    sd["model.norm.weight"] = torch.zeros(d) if variant in ("A", "B") else ones()
    for j in range(CFG["num_nextn_predict_layers"]):
        p = f"model.mtp_layers.{j}."
        sd[p + "token_layernorm.weight"] = ones()
        sd[p + "hidden_layernorm.weight"] = ones()
        sd[p + "input_proj.weight"] = r(d, 2 * d, s=0.1)
        block(p, sd)
        if variant == "A":
            sd[p + "final_layernorm.weight"] = torch.zeros(d) if j == 0 else ones() * 3
        elif variant == "B":
            sd[p + "final_layernorm.weight"] = ones() * 3 if j == 0 else torch.zeros(d)
        else:
            sd[p + "final_layernorm.weight"] = ones()
        assert set(k for k in sd if k.startswith(p)) == set(mtp_key_names(j))
    os.makedirs(path, exist_ok=True)
    save_file(sd, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    config = {
        # The real XiaomiMiMo config has model_type "mimo" + auto_map (needs trust_remote_code);
        # MiMoConfig is a Qwen2Config subclass, so model_type "qwen2" loads without remote code.
        "architectures": ["MiMoForCausalLM"], "model_type": "qwen2",
        **CFG, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "float32",
        "use_sliding_window": False, "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    }
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(config, fh, indent=1)
    return sorted(sd)


def run_variant(variant, k=3, max_tokens=24):
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # hooks must run in this process
    path = os.path.join(HERE, f"ckpt_{variant}")
    keys = write_ckpt(path, variant)

    # ---- hooks -------------------------------------------------------------------------------
    from collections import Counter
    import vllm.model_executor.models.mimo_mtp as mm
    layer_calls, step_idx_seen, layer_call_seq, captured = Counter(), Counter(), [], []
    orig_layer_fwd, orig_mtp_fwd = mm.MiMoMultiTokenPredictor.forward, mm.MiMoMTP.forward

    def pred_fwd(self, input_ids, positions, previous_hidden_states, inputs_embeds=None, spec_step_idx=0):
        idx = self.mtp_start_layer_idx + spec_step_idx
        layer_calls[idx] += 1
        layer_call_seq.append((idx, int(positions.shape[0])))
        out = orig_layer_fwd(self, input_ids, positions, previous_hidden_states, inputs_embeds, spec_step_idx)
        if len(captured) < 64:
            captured.append(dict(layer=idx, input_ids=input_ids.clone(), positions=positions.clone(),
                                 hidden=previous_hidden_states.clone(), out=out.clone()))
        return out

    def mtp_fwd(self, *a, spec_step_idx=0, **kw):
        step_idx_seen[spec_step_idx] += 1
        return orig_mtp_fwd(self, *a, spec_step_idx=spec_step_idx, **kw)

    mm.MiMoMultiTokenPredictor.forward = pred_fwd
    mm.MiMoMTP.forward = mtp_fwd

    from vllm import LLM, SamplingParams
    t0 = time.time()
    llm = LLM(model=path, skip_tokenizer_init=True, dtype="float32", seed=0, max_model_len=256,
              max_num_seqs=4, kv_cache_memory_bytes=64 << 20, enable_prefix_caching=False,
              async_scheduling=False, enforce_eager=True, disable_log_stats=False,
              speculative_config={"method": "mtp", "num_speculative_tokens": k})
    t_init = time.time() - t0
    sc = llm.llm_engine.vllm_config.speculative_config
    drafter_info = {}
    try:
        runner = llm.llm_engine.model_executor.driver_worker.worker.model_runner
        drafter = runner.drafter
        dm = drafter.model
        drafter_info = {
            "runner": type(runner).__module__ + "." + type(runner).__name__,
            "drafter": type(drafter).__name__, "draft_model": type(dm).__name__,
            "draft_mtp_layer_keys": list(dm.model.mtp_layers.keys()),
            "draft_lm_head_is_target_lm_head": dm.lm_head is runner.model.lm_head,
            "draft_embed_is_target_embed": dm.model.embed_tokens is runner.model.model.embed_tokens,
            "draft_attn_layers": sorted(getattr(drafter, "_draft_attn_layer_names", [])),
            "draft_final_norms": {kk: v.final_layernorm.weight.abs().sum().item()
                                  for kk, v in dm.model.mtp_layers.items()},
        }
    except Exception as e:  # noqa
        drafter_info = {"error": repr(e)}
    layer_calls.clear(); step_idx_seen.clear(); layer_call_seq.clear(); captured.clear()  # drop dummy/profile runs

    prompts = [{"prompt_token_ids": [5, 17, 42, 99, 3, 7, 200, 11]},
               {"prompt_token_ids": [8, 8, 1, 250, 64, 33]},
               {"prompt_token_ids": [100 + i for i in range(20)]}]
    sp = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, detokenize=False)
    outs = llm.generate(prompts, sp, use_tqdm=False)
    gen = [list(o.outputs[0].token_ids) for o in outs]
    metrics = {}
    for m in llm.get_metrics():
        if m.name.startswith("vllm:spec_decode"):
            metrics[m.name] = getattr(m, "values", None) or getattr(m, "value", None)
    res = dict(variant=variant, k=k, init_s=round(t_init, 1), method=sc.method,
               draft_arch=sc.draft_model_config.hf_config.architectures,
               draft_model_type=sc.draft_model_config.hf_config.model_type,
               draft_n_predict=getattr(sc.draft_model_config.hf_config, "n_predict", None),
               draft_num_hidden_layers=sc.draft_model_config.hf_config.num_hidden_layers,
               use_multi_module_mtp=sc.use_multi_module_mtp(),
               use_v2_model_runner=llm.llm_engine.vllm_config.use_v2_model_runner,
               drafter=drafter_info, generated=gen, spec_metrics=metrics,
               mtp_layer_calls_during_generate=dict(layer_calls),
               spec_step_idx_seen_during_generate=dict(step_idx_seen),
               first_calls=layer_call_seq[:8], n_checkpoint_keys=len(keys))
    if variant == "R":
        res["reference_check"] = reference_check(path, prompts, gen, captured)
    print("RESULT " + json.dumps(res), flush=True)
    return res


def reference_check(path, prompts, gen, captured):
    """Re-implement target + MTP math in plain torch and compare with what vLLM computed."""
    import torch
    from safetensors.torch import load_file
    W = load_file(os.path.join(path, "model.safetensors"))
    d, H = CFG["hidden_size"], CFG["num_attention_heads"]
    hd, eps = d // H, 1e-6

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def rope(x, pos):  # x [T, H, hd], neox style
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ang = pos[:, None].float() * inv[None]
        cos, sin = torch.cat([ang.cos(), ang.cos()], -1)[:, None], torch.cat([ang.sin(), ang.sin()], -1)[:, None]
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def block(p, x, pos):  # Qwen2 decoder layer, full causal attention over the given sequence
        T = x.shape[0]
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T + W[p + "self_attn.q_proj.bias"]).view(T, H, hd)
        k = (h @ W[p + "self_attn.k_proj.weight"].T + W[p + "self_attn.k_proj.bias"]).view(T, H, hd)
        v = (h @ W[p + "self_attn.v_proj.weight"].T + W[p + "self_attn.v_proj.bias"]).view(T, H, hd)
        q, k = rope(q, pos), rope(k, pos)
        att = torch.einsum("thd,shd->hts", q, k) / hd ** 0.5
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        o = torch.einsum("hts,shd->thd", att, v).reshape(T, d) @ W[p + "self_attn.o_proj.weight"].T
        x = x + o
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        m = torch.nn.functional.silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)
        return x + m @ W[p + "mlp.down_proj.weight"].T

    def target(ids):
        pos = torch.arange(len(ids))
        x = W["model.embed_tokens.weight"][torch.tensor(ids)]
        for i in range(CFG["num_hidden_layers"]):
            x = block(f"model.layers.{i}.", x, pos)
        return x  # pre-final-norm hidden

    def mtp(j, ids_shifted, pos, hidden):
        p = f"model.mtp_layers.{j}."
        e = W["model.embed_tokens.weight"][ids_shifted]
        e = torch.where(pos[:, None] == 0, torch.zeros_like(e), e)
        x = torch.cat([rms(hidden, W[p + "hidden_layernorm.weight"]), rms(e, W[p + "token_layernorm.weight"])], -1)
        x = x @ W[p + "input_proj.weight"].T
        x = block(p, x, pos)
        return rms(x, W[p + "final_layernorm.weight"])

    rep = {}
    ids0 = prompts[0]["prompt_token_ids"]; n = len(ids0)
    h_ref = target(ids0)
    logits_t = rms(h_ref, W["model.norm.weight"]) @ W["lm_head.weight"].T
    rep["target_first_token_ref_vs_vllm"] = [int(logits_t[-1].argmax()), gen[0][0]]
    c0 = captured[0]
    rep["first_call_num_tokens"] = int(c0["positions"].shape[0])
    rep["first_call_positions_req0"] = c0["positions"][:n].tolist()
    rep["first_call_input_ids_req0"] = c0["input_ids"][:n].tolist()
    rep["expected_shifted_ids_req0"] = ids0[1:] + [gen[0][0]]
    rep["max_abs_diff_hidden_in_vs_target_prenorm"] = float((c0["hidden"][:n] - h_ref).abs().max())
    rep["max_abs_diff_hidden_in_vs_target_postnorm"] = float(
        (c0["hidden"][:n] - rms(h_ref, W["model.norm.weight"])).abs().max())
    ids_sh = torch.tensor(ids0[1:] + [gen[0][0]])
    out_ref = mtp(0, ids_sh, torch.arange(n), h_ref)
    rep["max_abs_diff_mtp0_out_[h,e]_order"] = float((c0["out"][:n] - out_ref).abs().max())
    # the alternative concat order, for contrast
    p = "model.mtp_layers.0."
    e = W["model.embed_tokens.weight"][ids_sh]; e = torch.where(torch.arange(n)[:, None] == 0, 0 * e, e)
    x = torch.cat([rms(e, W[p + "token_layernorm.weight"]), rms(h_ref, W[p + "hidden_layernorm.weight"])], -1)
    x = rms(block(p, x @ W[p + "input_proj.weight"].T, torch.arange(n)), W[p + "final_layernorm.weight"])
    rep["max_abs_diff_mtp0_out_[e,h]_order"] = float((c0["out"][:n] - x).abs().max())
    draft0 = int((out_ref[-1] @ W["lm_head.weight"].T).argmax())  # logits = shared lm_head, no extra norm
    rep["draft1_ref"] = draft0
    c1 = captured[1]
    rep["second_call_input_id_req0_and_position"] = [int(c1["input_ids"][0]), int(c1["positions"][0])]
    rep["max_abs_diff_second_call_hidden_vs_first_out_last_token"] = float(
        (c1["hidden"][0] - c0["out"][n - 1]).abs().max())
    rep["second_call_layer"] = c1["layer"]
    # chain step 2 done by the (reused) layer 0 over [prefix + draft]: reproduce it
    ids_sh2 = torch.cat([ids_sh, torch.tensor([draft0])])
    hid2 = torch.cat([h_ref, out_ref[-1:]])
    out2_ref_layer0 = mtp(0, ids_sh2, torch.arange(n + 1), hid2)[-1]
    rep["max_abs_diff_second_call_out_vs_ref_layer0"] = float((c1["out"][0] - out2_ref_layer0).abs().max())
    out2_ref_layer1 = mtp(1, ids_sh2, torch.arange(n + 1), hid2)[-1]
    rep["max_abs_diff_second_call_out_vs_ref_layer1(if it were used; KV of step0 from layer0 ignored)"] = float(
        (c1["out"][0] - out2_ref_layer1).abs().max())
    return rep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant")
    ap.add_argument("--k", type=int, default=3)
    a = ap.parse_args()
    if a.variant:
        run_variant(a.variant, a.k)
        return
    env = {kk: v for kk, v in os.environ.items()
           if kk not in ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")}
    env.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", OMP_NUM_THREADS="1")
    results = []
    runs = [("A", {}), ("B", {}), ("R", {}),
            ("A", {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}),  # default engine layout (hooks can't see it)
            ("A", {"VLLM_USE_V2_MODEL_RUNNER": "1"})]        # force Model Runner V2 (multi-module MTP path)
    for v, extra in runs:  # one engine at a time: each run in its own process, sequentially
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--variant", v, "--k", str(a.k)],
                           env={**env, **extra}, capture_output=True, text=True, cwd=HERE)
        with open(os.path.join(HERE, f"run_{v}{'_' + '_'.join(extra) if extra else ''}.log"), "w") as fh:
            fh.write(p.stdout + "\n----- stderr -----\n" + p.stderr)
        line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        if line:
            results.append({**json.loads(line[-1][7:]), "env": extra})
        else:
            err = [l for l in p.stderr.splitlines() if "Error" in l or "assert" in l]
            results.append({"variant": v, "env": extra, "rc": p.returncode, "error_lines": err[-8:],
                            "stderr_tail": p.stderr[-3000:]})
        print(json.dumps(results[-1], indent=1), flush=True)
    with open(os.path.join(HERE, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
