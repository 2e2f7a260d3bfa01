"""What each head type does, one module per type, each owning its head modules and its behaviour
(mtp.nn.heads.base.HeadBehaviour): the states its heads compute, its part of the memory-efficient backward, its
proposer for decoding (mtp.nn.heads.proposer), how new heads start when added to a model, what `mtp export` writes.

mtp/head_types.py registers every type (torch-free: names, parameter counts, export refusals) and names its
behaviour class here; nothing outside these modules tests which head type a model has.

    base.py        HeadBehaviour: parallel heads on the trunk's z, run one by one; OnHead1: heads 2..n on head 1
    proposer.py    Proposer: heads 1..k+1 for decoding, one by one (the base of every proposer)
    parallel.py    transformer and linear heads: LinearHead, FusedHeads (one block for decoding), FusedProposer
    medusa.py      Medusa-1 heads and their export in vLLM's Medusa format
    sequential.py  DeepSeek-V3's sequential modules and their chain proposer
"""
