"""The public face of `robustbench_mixup.data` (docs/API.md).

The code lives in `robustbench_mixup.learning.data`; these names are the contract and keep importing from here.
"""

from robustbench_mixup.learning.data import Dataset, corrupt_labels, load_dataset

__all__ = ["Dataset", "corrupt_labels", "load_dataset"]
