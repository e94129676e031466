"""The public face of `robustbench_mixup.checkpoints` (docs/API.md).

The code lives in `robustbench_mixup.learning.checkpoints`; these names are the contract and keep importing from here.
"""

from robustbench_mixup.learning.checkpoints import load, save

__all__ = ["load", "save"]
