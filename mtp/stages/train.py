"""The train stage: one model of the n x size sweep (rule train_model), resuming from its last checkpoint.

The training itself is mtp.training (step, device, dist, memory, loop); this module opens the job's MLflow
child run for the loop to log to, and turns an out-of-memory error into one line with a batch size or size
preset that fits.
"""
from functools import partial

from mtp import UserError, config, tracking
from mtp.args import add_config_arg, add_model_args, model_spec
from mtp.io import read_json
from mtp.nn.model import ModelConfig
from mtp.training import loop
from mtp.training.device import pick_device, pick_dtype
from mtp.training.memory import is_out_of_memory, memory_advice


def train(cfg, entry, progress=True):
    """Train model `entry` (a mtp.spec.ModelSpec) in its own child run; returns the metrics dict
    (None on processes other than rank 0)."""
    open_run = partial(tracking.child_run, cfg, "train", **entry.run_keys())
    return loop.train(cfg, entry, open_run, progress=progress)


def add_arguments(p):
    add_config_arg(p)
    add_model_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    cfg = config.load(args.config)
    entry = model_spec(cfg, args)
    try:
        m = train(cfg, entry, progress=not args.no_progress)
    except (MemoryError, RuntimeError) as e:
        if not is_out_of_memory(e):
            raise
        raise UserError(f"out of memory ({str(e).splitlines()[0][:120]}); estimate: {_advice(cfg, entry)}") from None
    if m:
        print(f"{entry.name}: val loss head 1 {m['val_loss_head_1']:.4f} "
              f"({m['val_bits_per_byte']:.3f} bits/byte), {m['tokens_seen']:,} tokens in {m['wall_s']:.0f} s")


def _advice(cfg, entry):
    """The memory advice for `entry`, from its config and data alone (after training ran out of memory)."""
    tc = entry.train
    device = pick_device(tc)
    dtype = pick_dtype(tc, device)
    vocab = read_json(config.data_dir(cfg, entry.dataset) / "meta.json")["vocab_size"]
    mcfg = ModelConfig.from_preset(entry.size, vocab, n_heads=entry.n_heads, head_type=tc["head_type"],
                                   extra=cfg["model_presets"])
    return memory_advice(mcfg, tc, dtype, device, entry.size)[2]
