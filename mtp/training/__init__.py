"""The training library: the multi-head step and its loss, where it runs (device, torchrun), the memory
estimate, and the loop. It never imports MLflow: the train stage (mtp/stages/train.py) hands the loop a run to log to.

step    head targets, the backward of the summed head losses (naive or memory-efficient), lr schedule,
        optimizer, validation loss
device  the device and dtype a config asks for
dist    data parallelism under torchrun; the batches of a step; the number of steps
memory  the memory estimate and the advice when it does not fit
loop    one model's training: set-up, resume, steps, evaluations, checkpoints, final metrics
"""
