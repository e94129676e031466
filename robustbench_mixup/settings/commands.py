"""The command lines the tool suggests, generated from a run's own settings.

When the report or the command line names a command that fills a missing stage, it comes from here,
built from the run's stored configuration and output root: followed as printed, it evaluates the same
run, or trains the sweep on the same data, network and schedule. No torch here (the report and the
CLI's messages use it).
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from robustbench_mixup.settings.config import (
    ATTACKS,
    BASELINE,
    METHODS,
    PROG,
    SURROGATE,
    AttackConfig,
    DiagnoseConfig,
    ModelName,
    ProbeConfig,
    TrainConfig,
)
from robustbench_mixup.settings.imported import is_imported
from robustbench_mixup.settings.presets import Preset
from robustbench_mixup.settings.sweeps import SweepConfig

SWEEP_NOISE = (0.5,)  # the paper's middle noise level, where the memorization claim is read
SWEEP_ALPHA = (0.0, 8.0)  # ERM and the paper's mixup α for noisy labels


def _join(*words: object) -> str:
    return " ".join(shlex.quote(str(w)) for w in words)


def _out(out: str | Path) -> list[str]:
    return [] if Path(out) == Path(".") else ["--out", str(out)]


def _numbers(values: tuple[float, ...]) -> list[str]:
    return [repr(float(v)) if float(v) != int(v) else str(int(v)) for v in values]  # exact: parses back equal


def train_command(out: str | Path, run: str, config: dict[str, Any], *, resume: bool = False) -> str:
    """`robust-eval train` with every setting of `config` spelled out (and --resume when asked)."""
    cfg = TrainConfig(**config)
    words: list[object] = [
        PROG, "train", "--dataset", cfg.dataset, "--model", cfg.model, "--epochs", cfg.epochs,
        "--alpha", *_numbers((cfg.alpha,)), "--seed", cfg.seed, "--batch-size", cfg.batch_size, "--lr", repr(cfg.lr),
        "--weight-decay", repr(cfg.weight_decay), "--dropout", *_numbers((cfg.dropout,)),
    ]  # fmt: skip
    if cfg.width is not None:
        words += ["--width", cfg.width]
    if cfg.train_n is not None:
        words += ["--train-n", cfg.train_n]
    if cfg.methods != TrainConfig.methods:
        words += ["--methods", *cfg.methods]
        words += [w for m in cfg.compared if not METHODS[m].recorded for w in _method_option(cfg, m)]  # α: above
    words += ["--run", run, *_out(out)] + (["--resume"] if resume else [])
    return _join(*words)


def _method_option(cfg: TrainConfig, method: str) -> list[object]:
    """`--cutmix-alpha 1`: the option of a method's parameter, with the run's value."""
    info = METHODS[method]
    return [] if info.param is None else [info.option, *_numbers((cfg.param(method),))]


def attack_command(out: str | Path, run: str, attack: AttackConfig) -> str:
    """The evaluation `attack` (its ε grid, steps, n) of `run`."""
    info = ATTACKS[attack.attack]
    words: list[object] = [PROG, info.subcommand, "--eps", *_numbers(attack.eps)]
    if info.loss != "ce":
        words += ["--loss", info.loss]
    if attack.steps is not None:
        words += ["--steps", attack.steps]
    if attack.step_size is not None:
        words += ["--step-size", repr(attack.step_size)]
    if attack.restarts != 1:
        words += ["--restarts", attack.restarts]
    if attack.precision != "fp32":
        words += ["--precision", attack.precision]
    if attack.compile:
        words += ["--compile"]
    if attack.n is not None:
        words += ["--n", attack.n]
    return _join(*words, "--run", run, *_out(out))


def probe_command(out: str | Path, run: str, probe: ProbeConfig | None = None) -> str:
    words: list[object] = [PROG, "probe"]
    if probe is not None and probe != ProbeConfig():
        words += ["--pairs", probe.pairs, "--lambdas", probe.lambdas, "--split", probe.split,
                  "--same-class", probe.same_class]  # fmt: skip
    return _join(*words, "--run", run, *_out(out))


def diagnose_command(out: str | Path, run: str, diagnose: DiagnoseConfig | None = None) -> str:
    words: list[object] = [PROG, "diagnose"]
    if diagnose is not None and diagnose.eps is not None:
        words += ["--eps", *_numbers(diagnose.eps)]
    return _join(*words, "--run", run, *_out(out))


def sweep_command(out: str | Path, run: str, sweep: SweepConfig) -> str:
    """The memorization sweep named like the run."""
    words: list[object] = [
        PROG, "sweep", "corrupt", "--dataset", sweep.dataset, "--model", sweep.model, "--noise", *_numbers(sweep.noise),
        "--alpha", *_numbers(sweep.alpha), "--epochs", sweep.epochs, "--batch-size", sweep.batch_size,
        "--lr", repr(sweep.lr), "--weight-decay", repr(sweep.weight_decay),
    ]  # fmt: skip
    if sweep.dropout != (0.0,):
        words += ["--dropout", *_numbers(sweep.dropout)]
    if sweep.methods != SweepConfig.methods:
        words += ["--methods", *sweep.methods]
    if sweep.factor_methods() and sweep.smoothing != SweepConfig.smoothing:
        words += ["--smoothing", *_numbers(sweep.smoothing)]
    if sweep.seeds != (0,):
        words += ["--seeds", *sweep.seeds]
    if sweep.width is not None:
        words += ["--width", sweep.width]
    if sweep.train_n is not None:
        words += ["--train-n", sweep.train_n]
    return _join(*words, "--name", run, *_out(out))


def run_sweep_config(config: dict[str, Any]) -> SweepConfig:
    """The sweep suggested for a run made by `robust-eval train`: its data, network and schedule, at the
    paper's middle noise level, ERM against mixup with the paper's α for noisy labels, on the run's own seed
    (so the runs of a group of seeds get sweeps of their own seeds, not one seed counted several times)."""
    cfg = TrainConfig(**config)
    return SweepConfig(
        dataset=cfg.dataset, model=cfg.model, noise=SWEEP_NOISE, alpha=SWEEP_ALPHA, epochs=cfg.epochs,
        seeds=(cfg.seed,), batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, width=cfg.width,
        methods=cfg.compared or SweepConfig.methods, smoothing=(cfg.smoothing,), train_n=cfg.train_n,
    )  # fmt: skip


def import_command(out: str | Path, run: str, config: dict[str, Any]) -> str:
    """`robust-eval import` as the run was made (each member's file by the name it had; the user knows where)."""
    words: list[object] = [PROG, "import", "--run", run, "--dataset", config["dataset"], "--arch", config["arch"]]
    members = config["members"]
    words += [w for m in config["methods"] for w in ("--member", f"{m}={members[m]['file']}")]
    if SURROGATE in members:
        words += ["--source", f"{SURROGATE}={members[SURROGATE]['file']}"]
    norm = config.get("normalization")
    if norm == "inside":
        words.append("--normalized")
    elif isinstance(norm, dict) and str(config["arch"]).startswith("torchvision:"):
        words += ["--mean", *_numbers(tuple(norm["mean"])), "--std", *_numbers(tuple(norm["std"]))]
    return _join(*words, *_out(out))


def stage_commands(out: str | Path, run: str, config: dict[str, Any], preset: Preset | None = None) -> dict[str, str]:
    """Stage name -> the command that fills it for `run` (`config`: the run's stored TrainConfig dict).

    For a run made by `robust-eval run`, pass its `preset`: the commands then carry the preset's settings,
    so that `robust-eval run` afterwards finds those stages done."""
    attacks = {name: AttackConfig(name, tuple(float(e) for e in info.example_eps)) for name, info in ATTACKS.items()}
    if preset is not None:
        attacks |= {a.attack: a for a in preset.attacks}
    if is_imported(config):  # its models come from files; a memorization sweep trains models of its own
        if SURROGATE not in config["members"]:  # no black-box source was imported: the white box alone
            attacks = {name: dataclasses.replace(a, mode="white") for name, a in attacks.items()}
        own = config["arch"] in ModelName.values()
        compared = tuple(m for m in config["methods"] if m != BASELINE)
        sweep = SweepConfig(dataset=config["dataset"], model=config["arch"], noise=SWEEP_NOISE, alpha=SWEEP_ALPHA,
                            epochs=TrainConfig.epochs, methods=compared)  # fmt: skip
        return {
            "train": import_command(out, run, config),
            "diagnose": diagnose_command(out, run, None),
            **{name: attack_command(out, run, a) for name, a in attacks.items()},
            "probe": probe_command(out, run, None),
            "sweep": sweep_command(out, run, sweep) if own else "",
        }
    return {
        "train": train_command(out, run, config, resume=True),
        "diagnose": diagnose_command(out, run, None if preset is None else preset.diagnose()),
        **{name: attack_command(out, run, a) for name, a in attacks.items()},
        "probe": probe_command(out, run, None if preset is None else preset.probe()),
        "sweep": sweep_command(out, run, run_sweep_config(config) if preset is None else preset.sweep()),
    }
