"""The public face of `robustbench_mixup.stats` (docs/API.md).

The code lives in `robustbench_mixup.measures.stats`; these names are the contract and keep importing from here.
"""

from robustbench_mixup.measures.stats import (
    Effect,
    MeanDifference,
    PairedDifference,
    examples_for_power,
    holm,
    mcnemar_p,
    paired_difference,
    paired_mean_difference,
    pooled_effect,
    seeds_for_power,
    seeds_to_detect,
    units_for_power,
    wilson_interval,
)

__all__ = ["Effect", "MeanDifference", "PairedDifference", "examples_for_power", "holm", "mcnemar_p",
           "paired_difference", "paired_mean_difference", "pooled_effect", "seeds_for_power", "seeds_to_detect",
           "units_for_power", "wilson_interval"]  # fmt: skip
