"""Lossless speculative sampling at temperature > 0 (Leviathan et al. 2023, Chen et al. 2023), for the decoding
engine (mtp/decoding/engine.py): the heads' distributions at temperature T are the draft distributions q, head 1's
are the target p, and the output is distributed exactly as sampling from head 1 token by token.

Draft j (for the token j positions after the pending one) is drawn from q_j = head j+1's distribution at the
row's last verified position. The next forward gives p_1..p_{k+1}, head 1's distributions at the block
positions. Draft j is accepted with probability min(1, p_j(d_j) / q_j(d_j)), in order, stopping at the first
rejection; a rejected position draws from the residual norm(max(0, p_j - q_j)); when all k are accepted, the
bonus token is drawn from p_{k+1}. What the rule needs is that d_j was drawn from q_j given the prefix and
d_1..d_{j-1}: parallel heads' q_j see the verified prefix only, sequential heads' (mtp.nn.heads.sequential.ChainProposer) also
the earlier drafts, as a draft model's would.
"""
import torch


class Sampler:
    """Temperature, random generator and the draft distributions q (B, k, V) of the drafts in flight."""

    def __init__(self, temperature, generator=None):
        self.temperature, self.generator, self.q = temperature, generator, None

    def probs(self, logits):
        return torch.softmax(logits.float() / self.temperature, dim=-1)

    def draw(self, probs):
        """probs (..., V) -> one token per row of the leading dims (...)."""
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=self.generator).view(probs.shape[:-1])

    def propose(self, draft_logits):
        """draft_logits (B, k, V) -> drafts (B, k) drawn from q; q kept for verify()."""
        self.q = self.probs(draft_logits)
        return self.draw(self.q)

    def propose_next(self, logits, first):
        """One more draft (sequential heads draft in turn: mtp.nn.heads.sequential.ChainProposer): logits (B, V) -> (B,) drawn from q,
        whose q joins the step's earlier ones (first: the step's first draft)."""
        q = self.probs(logits)[:, None]  # (B, 1, V)
        self.q = q if first else torch.cat([self.q, q], dim=1)
        return self.draw(q)[:, 0]

    def keep(self, rows):
        if self.q is not None:
            self.q = self.q[rows]

    def verify(self, block, logits):
        """block (B, T) = [x, d_1..d_j], head 1's logits at the block (B, T, V) -> (g (B, T), a (B,)):
        a = accepted drafts, g[b, :a+1] the tokens row b gains (its accepted drafts, then the token drawn at the
        first rejection or the bonus token)."""
        B, T = block.shape
        j = T - 1
        p = self.probs(logits)  # (B, T, V)
        rows = torch.arange(B, device=block.device)[:, None]
        drafts = block[:, 1:]  # (B, j)
        q = self.q[:, :j]  # (B, j, V)
        pos = torch.arange(j, device=block.device)[None, :]
        ratio = p[rows, pos, drafts] / q[rows, pos, drafts].clamp_min(1e-30)  # (B, j)
        u = torch.rand(B, j, generator=self.generator, device=block.device)
        a = (u < ratio).long().cumprod(dim=1).sum(dim=1)  # (B,): the first rejection stops acceptance
        p_a = p[rows[:, 0], a]  # (B, V): head 1 at the first rejected draft, or at the bonus position
        q_a = torch.cat([q, torch.zeros_like(q[:, :1])], dim=1)[rows[:, 0], a]  # no draft at the bonus: q = 0
        residual = (p_a - q_a).clamp_min(0)
        total = residual.sum(-1, keepdim=True)
        residual = torch.where(total > 0, residual / total.clamp_min(1e-30), p_a)  # p == q exactly: never rejected
        g = torch.cat([drafts, torch.zeros_like(block[:, :1])], dim=1)  # (B, j+1); works for j = 0 too
        g[rows[:, 0], a] = self.draw(residual)
        return g, a
