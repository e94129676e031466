"""The public face of `robustbench_mixup.train` (docs/API.md).

The training stage lives in `robustbench_mixup.stages.train` (a named run of every method, with resume) over the one
loop in `robustbench_mixup.learning.loop`; these names are the contract and keep importing from here.
"""

from robustbench_mixup.stages.train import RunResult, train_run

__all__ = ["RunResult", "train_run"]
