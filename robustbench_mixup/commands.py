"""The command lines the tool suggests, generated from a run's own settings.

When the report or the command line names a command that fills a missing stage, it comes from here,
built from the run's stored configuration and output root: followed as printed, it evaluates the same
run, or trains the sweep on the same data, network and schedule. No torch here (the report and the
CLI's messages use it).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from .config import ATTACKS, TrainConfig

PROG = "robust-eval"
SWEEP_NOISE = ("0.5",)  # the paper's middle noise level, where the memorization claim is read
SWEEP_ALPHA = ("0", "8")  # ERM and the paper's mixup α for noisy labels


def _join(*words: object) -> str:
    return " ".join(shlex.quote(str(w)) for w in words)


def _out(out: str | Path) -> list[str]:
    return [] if Path(out) == Path(".") else ["--out", str(out)]


def train_command(out: str | Path, run: str, config: dict[str, Any], *, resume: bool = False) -> str:
    """`robust-eval train` with every setting of `config` spelled out (and --resume when asked)."""
    cfg = TrainConfig(**config)
    words: list[object] = [
        PROG, "train", "--dataset", cfg.dataset, "--model", cfg.model, "--epochs", cfg.epochs,
        "--alpha", f"{cfg.alpha:g}", "--seed", cfg.seed, "--batch-size", cfg.batch_size, "--lr", f"{cfg.lr:g}",
        "--weight-decay", f"{cfg.weight_decay:g}", "--dropout", f"{cfg.dropout:g}",
    ]  # fmt: skip
    if cfg.width is not None:
        words += ["--width", cfg.width]
    words += ["--run", run, *_out(out)] + (["--resume"] if resume else [])
    return _join(*words)


def attack_command(out: str | Path, run: str, attack: str) -> str:
    info = ATTACKS[attack]
    return _join(PROG, attack, "--eps", *info.example_eps, "--run", run, *_out(out))


def probe_command(out: str | Path, run: str) -> str:
    return _join(PROG, "probe", "--run", run, *_out(out))


def sweep_command(out: str | Path, run: str, config: dict[str, Any]) -> str:
    """The memorization sweep named like the run, on the run's data, network and schedule."""
    cfg = TrainConfig(**config)
    words: list[object] = [
        PROG, "sweep", "corrupt", "--dataset", cfg.dataset, "--model", cfg.model, "--noise", *SWEEP_NOISE,
        "--alpha", *SWEEP_ALPHA, "--epochs", cfg.epochs, "--batch-size", cfg.batch_size, "--lr", f"{cfg.lr:g}",
        "--weight-decay", f"{cfg.weight_decay:g}",
    ]  # fmt: skip
    if cfg.width is not None:
        words += ["--width", cfg.width]
    return _join(*words, "--name", run, *_out(out))


def stage_commands(out: str | Path, run: str, config: dict[str, Any]) -> dict[str, str]:
    """Stage name -> the command that fills it for `run` (config: the run's stored TrainConfig dict)."""
    return {
        "train": train_command(out, run, config, resume=True),
        **{name: attack_command(out, run, name) for name in ATTACKS},
        "probe": probe_command(out, run),
        "sweep": sweep_command(out, run, config),
    }
