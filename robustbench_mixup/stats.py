"""The public face of `robustbench_mixup.stats` (docs/API.md).

The code lives in `robustbench_mixup.measures.stats`; these names are the contract and keep importing from here.
"""

from robustbench_mixup.measures.stats import PairedDifference, paired_difference, pooled_effect, wilson_interval

__all__ = ["PairedDifference", "paired_difference", "pooled_effect", "wilson_interval"]
