"""The command line: parse, dispatch to a stage, print. `robust-eval` is `robustbench_mixup.cli:main`."""

from robustbench_mixup.cli.dispatch import main

__all__ = ["main"]
