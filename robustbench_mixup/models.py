"""The public face of `robustbench_mixup.models` (docs/API.md).

The code lives in `robustbench_mixup.learning.models`; these names are the contract and keep importing from here.
"""

from robustbench_mixup.learning.models import MODELS, build_model

__all__ = ["MODELS", "build_model"]
