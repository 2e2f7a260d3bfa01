"""The KV cache of the decoding engine (mtp/decoding/engine.py): preallocated (B, nkv, S, hs) buffers per attention
layer with an explicit position API (begin / advance / rollback per row, keep rows), gpt-fast style."""
import torch


class LayerCache:
    """K/V of one attention layer: preallocated (B, nkv, S, hs) buffers (nkv: its key/value heads), written at the
    rows' positions."""

    def __init__(self, owner, nh, hs):
        B, S = owner.lengths.shape[0], owner.capacity
        self.owner = owner
        self.k = torch.zeros(B, nh, S, hs, dtype=owner.dtype, device=owner.lengths.device)
        self.v = torch.zeros_like(self.k)

    def update(self, k, v):
        """k, v (B, nh, T, hs) at the positions of the owner's current step -> all keys/values (B, nh, S', hs)."""
        rows, pos, S = self.owner.step  # (B, T), (B, T), int
        self.k[rows, :, pos] = k.transpose(1, 2)  # (B, T, nh, hs)
        self.v[rows, :, pos] = v.transpose(1, 2)
        return self.k[:, :, :S], self.v[:, :, :S]  # (B, nh, S', hs)

    def keep(self, rows):
        self.k, self.v = self.k[rows], self.v[rows]


class KVCache:
    """Every attention layer's cache for a batch: the trunk blocks, head 1 and the k drafting heads.

    lengths (B,): how many positions each row holds (0..lengths-1); it is also the position of
    the next token a row is fed. `begin(T)` fixes the positions lengths..lengths+T-1 that every
    layer's update() writes in a forward; then `advance(T)` commits them and `rollback(n)`
    (per row) discards the last n. Discarded entries stay in the buffers, masked, until overwritten.
    """

    def __init__(self, model, batch, capacity, k=0, proposer=None):
        cfg = model.cfg
        p = next(model.parameters())
        # positions must stay below max_seq_len (rotary tables): the capacity never passes it
        self.capacity, self.dtype = min(capacity, cfg.max_seq_len), p.dtype
        self.lengths = torch.zeros(batch, dtype=torch.long, device=p.device)
        self.keys = torch.arange(self.capacity, device=p.device)  # (S,): sliced, never rebuilt per step
        self.rows = torch.arange(batch, device=p.device)[:, None]  # (B, 1)
        self.trunk = [LayerCache(self, cfg.n_kv_heads, cfg.head_dim) for _ in model.trunk]
        # heads 1..k+1 for decoding (the head type's mtp.nn.heads.proposer.Proposer; pass one to reuse it across
        # batches) and their cache layers (a list; None for a head without attention)
        self.proposer = model.behaviour.proposer(model, k) if proposer is None else proposer
        self.heads = self.proposer.cache_layers(self, LayerCache)
        self.step = None  # (rows, positions, keys span) of the forward under way

    def begin(self, T, longest=None):
        """Start a forward of T tokens per row -> (positions (B, T), mask (B, 1, T, S')).

        longest: max(lengths) when the caller already knows it (saves a device read).
        """
        B = self.lengths.shape[0]
        S = (int(self.lengths.max()) if longest is None else longest) + T  # keys: up to the longest row's last
        if S > self.capacity:
            raise ValueError(f"KV cache overflow: {S} positions needed, capacity {self.capacity}")
        pos = self.positions(T)  # (B, T)
        self.step = self.rows.expand(B, T), pos, S
        mask = self.keys[None, None, :S] <= pos[:, :, None]  # (B, T, S'): query t of row b sees keys <= lengths[b] + t
        return pos, mask[:, None]  # (B, T), (B, 1, T, S')

    def positions(self, T):
        return self.lengths[:, None] + self.keys[:T]  # (B, T)

    def advance(self, n):
        """Commit the next n positions of each row (n: int or (B,) tensor)."""
        self.lengths = self.lengths + n
        self.step = None

    def rollback(self, n, check=True):
        """Forget the last n positions of each row (n: int or (B,) tensor); check=False skips the
        (device-reading) check for callers whose n never passes what the forward added."""
        lengths = self.lengths - n
        if check and int(lengths.min()) < 0:
            raise ValueError("rollback past the start of the cache")
        self.lengths = lengths

    def keep(self, rows):
        """Keep only batch rows `rows` (a (B',) index tensor), in that order."""
        self.lengths = self.lengths[rows]
        self.rows = self.rows[:rows.shape[0]]
        for layer in [*self.trunk, *self.heads]:
            if layer is not None:
                layer.keep(rows)
