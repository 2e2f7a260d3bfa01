"""The stages: one module per `mtp <stage>` (mtp/cli.py dispatches by name), each `add_arguments(parser)` and
`run(args)`, wiring the libraries below; the per-model ones share harness.py (the model the arguments name, its
MLflow child run, its result written through mtp.results). Nothing below this layer imports a stage."""
