"""7. `cli_startup`: wall time of `robust-eval --help` in a fresh process, against a bare interpreter.

The help must not import torch: the import-time profile of the same command is checked for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from .timing import Result, Target, measure


def _command() -> list[str]:
    script = Path(sys.executable).with_name("robust-eval")
    found = str(script) if script.exists() else shutil.which("robust-eval")
    return [found, "--help"] if found else [sys.executable, "-m", "robustbench_mixup", "--help"]


def cli_startup(*, repeat: int, warmup: int = 1) -> Result:
    command = _command()

    def run(args: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    fns = {"robust-eval --help": lambda: run(command), "python -c pass": lambda: run([sys.executable, "-c", "pass"])}
    timings, _ = measure(fns, repeat=repeat, device=torch.device("cpu"), warmup=warmup)
    profile = subprocess.run(command, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}, capture_output=True,
                             text=True, check=True).stderr  # fmt: skip
    imported = sorted({line.rsplit("|", 1)[-1].strip().split(".")[0] for line in profile.splitlines() if "|" in line})
    result = Result("cli_startup", "fresh process", timings, notes={"command": " ".join(command)})
    result.notes["imports_torch"] = "torch" in imported
    result.targets += [
        Target("seconds", timings["robust-eval --help"].median, "<=", 1.0),
        Target("imports torch (0 = no)", float("torch" in imported), "<=", 0.0),
    ]
    return result
