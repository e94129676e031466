"""Learning: data as tensors, the networks, the mixing methods and the one training loop.

`data` (datasets, label corruption), `seeding` (named random streams), `models` (the networks, their
normalization inside), `devices` (`--device`, autocast, `predict`), `mixing` (every training method as a
step), `loop` (`train_epoch`, `fit`), `checkpoints` (safetensors files that rebuild their model).
"""
