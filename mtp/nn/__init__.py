"""The network: the model (trunk, heads of a registered type, shared unembedding) and one module per head type
(its nn.Module and its behaviour). No I/O, no stage; mtp.decoding's engine and mtp.training's step run it."""
