"""The public face of `robustbench_mixup.results` (docs/API.md): the results database as pandas DataFrames.

The code lives in `robustbench_mixup.store.frames`; these names are the contract and keep importing from here.
"""

from robustbench_mixup.store.frames import Results, open

__all__ = ["Results", "open"]
