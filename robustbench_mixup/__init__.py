"""robust-eval: what mixup training does to a model's robustness, measured (Zhang et al., ICLR 2018).

The package reads in the order data flows: `data` -> `models` -> `mixing` -> `train` ->
`checkpoints` -> `results` -> `cli`. Importing it does not import torch; the submodules do.
"""

__version__ = "0.1.0"
