"""Sequential heads (DeepSeek-V3's MTP modules, mtp/nn/heads/sequential.py) in the decoding engine
(its ChainProposer): every draft equals what the model's own full forward predicts on the verified sequence with
the earlier drafts appended (the lagging per-module caches hold the right states after any mix of accepted and
rejected drafts), decoding is lossless, and a model trained on a cycle drafts right. Gradient equality: test_train;
speculative sampling: test_decode."""
import pytest
import torch

from mtp.decoding import engine as D
from mtp.nn.heads import sequential as S
from mtp.nn.model import ModelConfig, MTPModel
from mtp.training.step import head_targets, mtp_backward

V = 16


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny matmuls on one thread


def sequential_model(n, seed=0, scale=100.0, head_type="sequential"):
    torch.manual_seed(seed)
    m = MTPModel(ModelConfig(vocab_size=V, dim=32, n_layers=n + 2, n_attn_heads=2, n_heads=n,
                             head_type=head_type, max_seq_len=256)).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(scale)  # logit gaps far above float rounding
    return m


def cyclic(n, steps=150, skip=1, noise=0.0, head_type="sequential"):
    """Trained (memory-efficient backward) on the sequences t, t+skip, t+2*skip, .. mod V: drafts are right;
    `noise` then perturbs the modules (heads 2..n): a mix of accepted lengths."""
    model = sequential_model(n, scale=1.0, head_type=head_type)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        start = torch.randint(0, V, (8, 1), generator=torch.Generator().manual_seed(step))
        x, ys = head_targets((start + skip * torch.arange(24 + n)) % V, n)
        opt.zero_grad()
        mtp_backward(model, x, ys)
        opt.step()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.heads[1:].parameters():
            p.add_(noise * torch.randn(p.shape, generator=g))
    return model.eval()


def prompts_for(seed, count=5):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, 12, (count,), generator=g).tolist()
    return [torch.randint(0, V, (L,), generator=g).tolist() for L in lens]


def full_forward_drafts(model, seq, pending, drafts):
    """The drafts the model's full forward gives at the end of `seq` with `pending` and drafts[:-1] appended:
    module j reads token P+j, the j-th of [pending, d_1, ..]."""
    ext = seq + [pending] + drafts[:-1]
    T = len(seq)
    ahead = [torch.tensor([ext[j:j + T]]) for j in range(1, len(drafts) + 1)]
    logits = model(torch.tensor([seq]), heads=list(range(len(drafts) + 1)), ahead=ahead)
    return [int(lg[0, -1].argmax()) for lg in logits[1:]]


@pytest.mark.parametrize("head_type", ["sequential", "recursive"])
@pytest.mark.parametrize("make", [lambda t: sequential_model(4, seed=1, head_type=t),
                                  lambda t: cyclic(4, steps=30, noise=0.2, head_type=t)], ids=["random", "trained-perturbed"])
def test_every_draft_is_the_full_forwards_prediction(make, head_type):
    """Recursive heads (mtp/nn/heads/recursive.py): the full forward is training's depth_states, every chain at once."""
    drafts_are_full_forward_predictions(make(head_type))


def drafts_are_full_forward_predictions(model, k=3):
    prompts = prompts_for(3)
    B = len(prompts)
    cache = D.KVCache(model, B, 96, k)
    hist = [0] * (k + 1)
    with torch.inference_mode():
        x, drafts = D.start(model, cache, prompts, k)
        seqs = [list(p) for p in prompts]
        for step in range(12):
            for b in range(B):
                mine = drafts[b].tolist()
                assert mine == full_forward_drafts(model, seqs[b], int(x[b]), mine), (step, b)
            g, a, x_next, drafts = D.spec_step(model, cache, x, drafts)
            for b in range(B):
                seqs[b] += [int(x[b])] + g[b, :int(a[b])].tolist()
                hist[int(a[b])] += 1
            x = x_next
    assert cache.lengths.tolist() == [len(s) for s in seqs]
    assert hist[0] > 0 and sum(hist[1:]) > 0, hist  # rejections and acceptances (perturbed: every length)
    return cache.proposer


def test_compiled_drafting_drafts_as_eager_and_is_lossless():
    """decode.compile (the drafting pass as one torch.compile graph, dynamic shapes): every draft is still the full
    forward's prediction, and decoding gives head 1's greedy output at batch 1 and in a batch whose rows finish at
    different steps (eod) and leave it (compaction: fewer rows, a new shape)."""
    model = cyclic(4, steps=30, noise=0.2)
    prompts = prompts_for(5, count=6)
    ar, _ = D.decode(model, prompts, 24, eod_id=5, draft_tokens=0, batch_size=6)
    model.behaviour.compile_drafting = True
    assert drafts_are_full_forward_predictions(model).draft is not S.draft_chain
    for bs in (1, 6):
        spec, stats = D.decode(model, prompts, 24, eod_id=5, draft_tokens=3, batch_size=bs)
        assert spec == ar and stats.tokens_per_forward > 1, bs
    assert len({len(o) for o in ar}) > 1  # rows stop at different steps


@pytest.mark.parametrize("head_type", ["sequential", "recursive"])
@pytest.mark.parametrize("n", [2, 4])
def test_sequential_speculative_is_lossless_and_drafts_right_when_trained(n, head_type):
    accepted = []
    for model, seed in [(cyclic(n, skip=3, head_type=head_type), 0), (sequential_model(n, seed=1, head_type=head_type), 1),
                        (sequential_model(n, seed=2, head_type=head_type), 2)]:
        prompts = prompts_for(seed)
        ar, _ = D.decode(model, prompts, 20, draft_tokens=0, batch_size=1)
        for k, bs in [(n - 1, 1), (n - 1, 5), (1, 5)]:
            spec, stats = D.decode(model, prompts, 20, draft_tokens=k, batch_size=bs)
            assert spec == ar, (seed, k, bs)
        accepted.append(D.decode(model, prompts, 20, draft_tokens=n - 1, batch_size=1)[1].tokens_per_forward)
    assert accepted[0] > 1 + 0.7 * (n - 1) and max(accepted[1:]) < accepted[0], accepted
