"""The public face of `robustbench_mixup.probes` (docs/API.md).

The code lives in `robustbench_mixup.measures.interpolation`; these names are the contract and keep importing
from here.
"""

from robustbench_mixup.measures.interpolation import (
    input_gradient_norm,
    interpolation_miss_rate,
    lambda_grid,
    sample_pairs,
)

__all__ = ["input_gradient_norm", "interpolation_miss_rate", "lambda_grid", "sample_pairs"]
