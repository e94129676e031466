"""robust-eval: what mixup training does to a model's robustness, measured (Zhang et al., ICLR 2018).

Its folders are its layers, in the order data flows: `settings` -> `learning` (data, models, mixing, the
training loop, checkpoints) -> `measures` -> `attacks` -> `store` -> `stages` -> `verdicts` -> `report` -> `cli`
(docs/ARCHITECTURE.md). The public names keep their short paths (`robustbench_mixup.attacks`, `.mixing`, `.stats`,
`.data`, `.probes`, `.models`, `.checkpoints`, `.train`, `.results`; docs/API.md). Importing the package does not
import torch.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`robustbench_mixup.evaluate`, `Evaluation` and `results` (docs/API.md), imported on first use: importing the
    package itself stays free of torch, so `robust-eval --help` starts fast."""
    if name in ("evaluate", "Evaluation"):
        from robustbench_mixup.attacks import evaluation

        return getattr(evaluation, name)
    if name == "results":  # torch-free: the database as DataFrames
        import importlib

        return importlib.import_module("robustbench_mixup.results")
    raise AttributeError(f"module 'robustbench_mixup' has no attribute {name!r}")
