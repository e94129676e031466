"""The public face of `robustbench_mixup.mixing` (docs/API.md).

The code lives in `robustbench_mixup.learning.mixing`; these names are the contract and keep importing from here.
"""

from robustbench_mixup.learning.mixing import MixedBatch, cutmix_batch, mixup_batch

__all__ = ["MixedBatch", "cutmix_batch", "mixup_batch"]
