"""The command line, `robust-eval`: parse, validate, dispatch. No science lives here.

Every default, every `choices` list and every attack subcommand is read from `config` (the dataclasses,
the enums, the `ATTACKS` registry and the presets), so nothing is written twice. torch is imported only
inside the command that needs it, so `--help` answers at once.

Exit status: 0 success; 2 bad arguments or unusable input (one line on stderr, nothing written);
1 an unexpected internal error; 130 interrupted (what finished is kept: the message says how to go on).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .config import (
    ATTACKS,
    DATASETS,
    DEFAULT_DEVICE,
    DEFAULT_EXECUTOR,
    DEFAULT_OUT,
    DEFAULT_PRESET,
    DEFAULT_WIDTH,
    DEFAULT_WORKERS,
    DEVICES,
    METHODS,
    MODELS,
    PRECISIONS,
    PRESETS,
    PROG,
    AttackConfig,
    Backend,
    Executor,
    Job,
    Mode,
    ProbeConfig,
    SameClass,
    Split,
    SweepConfig,
    TrainConfig,
    attack_named,
    default_run_name,
)  # fmt: skip
from .errors import UsageError

if TYPE_CHECKING:  # typing only: importing evaluation would pull in torch
    from .evaluation import Evaluation

# The configs' defaults, where each is written once.
TRAIN, PROBE = TrainConfig(), ProbeConfig()
ATTACK = AttackConfig("fgsm", ())
SWEEP = SweepConfig(TRAIN.dataset, TRAIN.model, noise=(), alpha=(), epochs=TRAIN.epochs)


def rounded(value: Any, digits: int = 6) -> Any:
    """`value` with every float rounded to `digits` significant digits (0.067, not 0.06699999999999995)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def _json(obj: Any) -> str:
    import json

    return json.dumps(rounded(obj))


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong and where to look) and exit status 2, and no
    option is taken from an abbreviation ('run --seed 1' must not start a group of seeds)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _command(sub: argparse._SubParsersAction, name: str, help: str, description: str, examples: list[str],
             resume: str) -> argparse.ArgumentParser:  # fmt: skip
    """A subcommand with a description and examples; `resume` is what Ctrl-C tells the user."""
    p = sub.add_parser(name, help=help, formatter_class=argparse.RawDescriptionHelpFormatter, description=description,
                       epilog="examples:\n" + "\n".join(f"  {e}" for e in examples))  # fmt: skip
    p.set_defaults(resume_hint=resume)
    return p


def _add_dataset_model(p: argparse.ArgumentParser) -> None:
    d, m = TRAIN.dataset, TRAIN.model
    p.add_argument("--dataset", default=d, choices=DATASETS, metavar="D",
                   help=f"one of: {', '.join(DATASETS)} (default: {d})")  # fmt: skip
    p.add_argument("--model", default=m, choices=MODELS, metavar="M",
                   help=f"one of: {', '.join(MODELS)} (default: {m})")  # fmt: skip


def _add_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"output root for checkpoints/, attacks/, reports/ (default: {DEFAULT_OUT})")  # fmt: skip


def _add_where(p: argparse.ArgumentParser) -> None:
    """Where outputs go, what computes, where data lives: the same three options on every command."""
    _add_out(p)
    p.add_argument("--device", default=DEFAULT_DEVICE, choices=DEVICES,
                   help=f"auto = cuda when available (default: {DEFAULT_DEVICE})")  # fmt: skip
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="where datasets live (default: $ROBUST_EVAL_DATA or ~/.cache/robust-eval/data)",
    )


def _add_training(p: argparse.ArgumentParser) -> None:
    """The training settings `train` and `sweep corrupt` share."""
    p.add_argument("--batch-size", type=int, default=TRAIN.batch_size, metavar="B",
                   help=f"(default: {TRAIN.batch_size})")  # fmt: skip
    p.add_argument("--lr", type=float, default=TRAIN.lr,
                   help=f"initial SGD learning rate, momentum {TRAIN.momentum:g} (default: {TRAIN.lr:g})")  # fmt: skip
    p.add_argument("--weight-decay", type=float, default=TRAIN.weight_decay, metavar="WD",
                   help=f"(default: {TRAIN.weight_decay:g})")  # fmt: skip
    p.add_argument("--width", type=int, metavar="W",
                   help=f"preact-resnet18 first-stage channels (default: {DEFAULT_WIDTH})")  # fmt: skip
    p.add_argument("--train-n", type=int, metavar="N",
                   help="train on a stratified subset of N training images, the same N for every seed and method "
                        "(default: all); the test images stay whole")  # fmt: skip


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = _command(
        sub, "train", "train a paired run: ERM, mixup and any other method (plus a black-box surrogate)",
        "Train one model per method on one dataset, all from the same initial weights on the same batches\n"
        "(only the method's step differs; default: 'erm' and 'mixup'), and 'surrogate', an independent ERM\n"
        "model (its own seed stream) that later serves as the black-box attack source. Every later stage\n"
        "compares each method with 'erm'. Checkpoints are written every epoch to OUT/checkpoints/RUN/;\n"
        "metrics go to OUT/reports/results.sqlite.\n\nmethods:\n"
        + "\n".join(f"  {m.name:<16} {m.summary}" for m in METHODS.values()),
        [
            f"robust-eval train                                   # {TRAIN.dataset}, {TRAIN.model}, "
            f"{TRAIN.epochs} epochs, α={TRAIN.alpha:g}",
            "robust-eval train --dataset digits --model mlp --epochs 5 --run digits-mlp",
            "robust-eval train --methods erm mixup cutmix manifold-mixup label-smoothing --run family",
            "robust-eval train --dataset cifar10 --model preact-resnet18 --epochs 200 --device cuda",
            "robust-eval train --run digits-mlp --dataset digits --model mlp --epochs 5 --resume",
            "robust-eval train --dataset digits --model mlp --epochs 5 --seeds 0 1 2 --run dm   # dm-s0, dm-s1, dm-s2",
        ],
        resume="finished epochs are saved: run the same command with --resume",
    )  # fmt: skip
    _add_dataset_model(p)
    p.add_argument("--epochs", type=int, default=TRAIN.epochs, metavar="E",
                   help=f"epochs; lr /10 at 50%% and 75%% of them (default: {TRAIN.epochs})")  # fmt: skip
    p.add_argument("--methods", nargs="+", default=list(TRAIN.methods), metavar="M",
                   help=f"the methods trained, erm among them: {', '.join(METHODS)} "
                        f"(default: {' '.join(TRAIN.methods)})")  # fmt: skip
    for name, info in METHODS.items():  # one option per method parameter, from the registry
        if info.param is not None:
            what = "Beta(α, α); 0 = ERM" if info.symbol == "α" else "factor in [0, 1); 0 = ERM"
            default = getattr(TRAIN, info.param)
            p.add_argument(info.option, type=float, default=default, metavar="A" if info.symbol == "α" else "S",
                           help=f"{name}'s {what} (default: {default:g})")  # fmt: skip
    p.add_argument("--seed", type=int, default=TRAIN.seed, metavar="S",
                   help=f"seed of the methods; the surrogate's is derived from it (default: {TRAIN.seed})")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", metavar="S",
                   help="instead of --seed: one run per seed (NAME-sS), recorded as group NAME for a pooled report "
                        "(NAME default: DATASET-MODEL-aALPHA)")  # fmt: skip
    p.add_argument("--run", metavar="NAME", help="run name (default: DATASET-MODEL-aALPHA-sSEED)")
    _add_training(p)
    p.add_argument("--dropout", type=float, default=TRAIN.dropout, metavar="P",
                   help=f"dropout p in [0, 1) (default: {TRAIN.dropout:g})")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same settings")
    p.add_argument("--download", action="store_true", help="allow fetching a missing dataset from the network")
    _add_where(p)
    p.set_defaults(handler=_cmd_train)


def _eps(text: str) -> float:
    """An ε in pixel units: a number (0.03) or a fraction (8/255)."""
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"invalid ε {text!r}: give a number like 0.03 or a fraction like 8/255"
        ) from None


def _add_attack(sub: argparse._SubParsersAction, command: str) -> None:
    names = [name for name, info in ATTACKS.items() if info.subcommand == command]
    info = ATTACKS[names[0]]
    label = " / ".join(ATTACKS[n].label for n in names)
    steps_line = (
        f"\nSteps of {info.default_step_size} unless --step-size is given." if "step_size" in info.options else ""
    )
    if "restarts" in info.options:
        steps_line += ("\nRandom starts come from the run's seed: the same command gives the same numbers. With\n"
                       "--restarts R an example counts as broken if any restart breaks it.")  # fmt: skip
    if len(names) > 1:
        steps_line += "\n--loss dlr attacks the difference-of-logits ratio, which does not saturate (≥ 3 classes)."
    eps = " ".join(info.example_eps)
    examples = [
        f"robust-eval {command} --eps {eps}",
        f"robust-eval {command} --eps 4/255 8/255 --mode white --json",
        f"robust-eval {command} --eps 8/255 --run mnist-5k-smallcnn-a1-s0 --backend torchattacks --n 500",
    ]
    if info.iterative:
        tuned = " --restarts 5" if "restarts" in info.options else " --step-size 0.002"
        examples.insert(1, f"robust-eval {command} --eps 0.03 --steps {2 * info.default_steps}{tuned}")
    if len(names) > 1:
        examples.insert(2, f"robust-eval {command} --eps 0.03 --loss dlr")
    if "precision" in info.options:
        examples.append(f"robust-eval {command} --eps 0.03 --precision bf16   # faster, not exact: see README")
    p = _command(
        sub, command, f"white- and black-box {label} evaluation of a trained run",
        f"Attack a trained run's models ('erm', 'mixup', any other method) with {label} ({info.summary})\n"
        "on the test split. White box: each model is attacked with its own gradients. Black box (transfer,\n"
        "the paper's Table 3): examples crafted on the run's 'surrogate' (or --source) are classified by each.\n"
        "Prints clean and robust top-1 accuracy per ε and the attack-failure indicators of the white box;\n"
        "every result (top-1/top-5, 95% Wilson intervals, per-example outcomes), indicator and sanity\n"
        "flag goes to OUT/reports/results.sqlite." + steps_line,
        examples,
        resume="nothing of this evaluation was recorded; transfer sets already saved are reused: "
        "run the same command again",
    )  # fmt: skip
    p.add_argument(
        "--eps", type=_eps, nargs="+", required=True, metavar="ε", help="one or more ε in [0, 1]; 8/255 works"
    )
    if info.iterative:
        p.add_argument("--steps", type=int, default=info.default_steps,
                       help=f"iterations (default: {info.default_steps})")  # fmt: skip
    if "step_size" in info.options:
        p.add_argument("--step-size", type=float, metavar="S", help=f"step size (default: {info.default_step_size})")
    if "restarts" in info.options:
        p.add_argument(
            "--restarts",
            type=int,
            default=ATTACK.restarts,
            metavar="R",
            help=f"random restarts, the worst case per example kept (default: {ATTACK.restarts})",
        )
    if len(names) > 1:
        p.add_argument("--loss", default="ce", choices=[ATTACKS[n].loss for n in names], help="(default: ce)")
    if "precision" in info.options:
        p.add_argument("--precision", default=ATTACK.precision, choices=PRECISIONS,
                       help="bf16: autocast in the attack loop, faster where the hardware has it, not exact "
                       f"(default: {ATTACK.precision})")  # fmt: skip
        p.add_argument("--compile", action="store_true", help="torch.compile the model for the attack loop")
    p.add_argument("--run", metavar="NAME", help="the run to evaluate (default: the latest)")
    p.add_argument("--mode", default=ATTACK.mode, choices=Mode.values(), help=f"(default: {ATTACK.mode})")
    p.add_argument("--source", metavar="CKPT", help="black-box source checkpoint (default: the run's surrogate)")
    p.add_argument("--n", type=int, metavar="N", help="first N test examples (default: all)")
    p.add_argument("--batch-size", type=int, default=ATTACK.batch_size, metavar="B",
                   help=f"(default: {ATTACK.batch_size})")  # fmt: skip
    p.add_argument("--backend", default=ATTACK.backend, choices=Backend.values(),
                   help=f"this package, or a library to cross-check (default: {ATTACK.backend})")  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON object per model on stdout instead of the table")
    _add_where(p)
    p.set_defaults(handler=_cmd_attack, attack=command)


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = _command(
        sub, "probe", "interpolation miss rate and input-gradient norms between training pairs (Figure 2)",
        "Probe a trained run's models ('erm', 'mixup', and any other method it trained) at\n"
        "x = λ·x_i + (1−λ)·x_j for pairs of training examples drawn from the run's seed (the same pairs for\n"
        "every model, and on every call):\n"
        "the share of pairs predicted as neither y_i nor y_j (95% Wilson interval) and the mean norm of\n"
        "the input gradient of each pair's soft-target loss (95% bootstrap interval), per λ.\n"
        "Rows go to OUT/reports/results.sqlite, the two curves to OUT/reports/RUN/probe-SPLIT-SAMECLASS.png.",
        ["robust-eval probe", "robust-eval probe --run mnist-5k-smallcnn-a1-s0 --pairs 5000 --lambdas 41",
         "robust-eval probe --same-class include --split test --json"],
        resume="nothing of this probe was recorded: run the same command again",
    )  # fmt: skip
    p.add_argument("--run", metavar="NAME", help="the run to probe (default: the latest)")
    p.add_argument("--pairs", type=int, default=PROBE.pairs, metavar="P",
                   help=f"pairs of examples (default: {PROBE.pairs})")  # fmt: skip
    p.add_argument("--lambdas", type=int, default=PROBE.lambdas, metavar="L",
                   help=f"λ grid size, linspace(0, 1, L) (default: {PROBE.lambdas})")  # fmt: skip
    p.add_argument("--same-class", default=PROBE.same_class, choices=SameClass.values(),
                   help=f"pairs of one class too? (default: {PROBE.same_class})")  # fmt: skip
    p.add_argument("--split", default=PROBE.split, choices=Split.values(), help=f"(default: {PROBE.split})")
    p.add_argument("--json", action="store_true", help="print the full curves as one JSON object")
    _add_where(p)
    p.set_defaults(handler=_cmd_probe)


def _add_diagnose(sub: argparse._SubParsersAction) -> None:
    p = _command(
        sub, "diagnose", "why each model is (not) robust: calibration, margins, input gradients, random noise",
        "For each model of a trained run ('erm', 'mixup', and any other method it trained), on the first N\n"
        "test examples: clean accuracy, the expected calibration error (15 bins), the median logit margin\n"
        "(true class minus the best other), the median and 90th percentile of the input-gradient norm, the\n"
        "share of gradients below 1e-6, and the accuracy under uniform random sign noise at each ε (drawn\n"
        "from the run's seed: every model meets the same noise). Tiny gradients at confident points make\n"
        "single-step attacks (FGSM) optimistic; random noise far weaker than an attack at the same ε is\n"
        "expected, an attack no stronger than random noise is not. Rows go to OUT/reports/results.sqlite.",
        ["robust-eval diagnose", "robust-eval diagnose --run family --eps 0.05 0.1 0.2 --n 1000",
         "robust-eval diagnose --eps 4/255 8/255 --json"],
        resume="nothing of this diagnosis was recorded: run the same command again",
    )  # fmt: skip
    p.add_argument("--run", metavar="NAME", help="the run to diagnose (default: the latest)")
    p.add_argument("--eps", type=_eps, nargs="+", metavar="E",
                   help="random sign noise levels, pixel units (default: ½, 1, 2 × the dataset's claim ε)")  # fmt: skip
    p.add_argument("--n", type=int, metavar="N", help="first N test examples (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON object with every model's row")
    _add_where(p)
    p.set_defaults(handler=_cmd_diagnose)


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser("sweep", help="parameter sweeps (corrupted-label memorization, robustness)")
    kinds = sweep.add_subparsers(title="sweeps", metavar="KIND", parser_class=_Parser)
    sweep.set_defaults(usage_of=sweep)
    p = _command(
        kinds, "corrupt", "the corrupted-label memorization experiment (the paper's Table 2)",
        "Train one model per (noise, α, dropout, seed) on training labels of which a fraction has been\n"
        "replaced by wrong ones (test labels stay clean), with the same loop as 'robust-eval train'\n"
        "(α = 0 is ERM). Each (noise, seed) draws ONE corrupted label set shared by every method.\n"
        "Prints a table shaped like the paper's Table 2 (mean ± std over seeds, %); per-epoch metrics go\n"
        "to OUT/reports/results.sqlite and the curves to OUT/reports/sweeps/NAME/curves.png.\n"
        "Interrupted? Run the same command again: finished jobs are kept, unfinished ones resume.",
        ["robust-eval sweep corrupt --dataset mnist-5k --noise 0.5 --alpha 0 8 32 --epochs 60 --name mem",
         "robust-eval sweep corrupt --dataset digits --model mlp --noise 0.2 0.8 --alpha 0 1 --dropout 0 0.5 \\\n"
         "      --epochs 20 --seeds 0 1 2 --jobs 2 --name grid",
         "robust-eval sweep corrupt ... --executor ray --address 10.0.0.5:6379"],
        resume="finished jobs are kept and unfinished ones resume from their last epoch: run the same command again",
    )  # fmt: skip
    _add_dataset_model(p)
    p.add_argument("--noise", type=float, nargs="+", required=True, metavar="F", help="fractions of corrupted labels")
    p.add_argument("--alpha", type=float, nargs="+", required=True, metavar="A",
                   help="α values of each mixing method; 0 = ERM")  # fmt: skip
    p.add_argument("--methods", nargs="+", default=list(SWEEP.methods), metavar="M",
                   help="methods trained at every α > 0: mixup, cutmix, manifold-mixup; label-smoothing at every "
                        "--smoothing; erm is the α = 0 jobs, always there "
                        f"(default: {' '.join(SWEEP.methods)})")  # fmt: skip
    p.add_argument("--smoothing", type=float, nargs="+", default=list(SWEEP.smoothing), metavar="S",
                   help=f"label-smoothing's factors, with --methods label-smoothing (default: "
                        f"{' '.join(map(str, SWEEP.smoothing))})")  # fmt: skip
    dropout, seeds = SWEEP.dropout, SWEEP.seeds
    p.add_argument("--dropout", type=float, nargs="+", default=list(dropout), metavar="P",
                   help=f"dropout p values (default: {' '.join(f'{d:g}' for d in dropout)})")  # fmt: skip
    p.add_argument("--epochs", type=int, required=True, metavar="E")
    p.add_argument("--seeds", type=int, nargs="+", default=list(seeds), metavar="S",
                   help=f"(default: {' '.join(map(str, seeds))})")  # fmt: skip
    p.add_argument("--name", required=True, help="sweep name; the same command again resumes it")
    _add_training(p)
    _add_executor(p)
    _add_where(p)
    p.set_defaults(handler=_cmd_sweep_corrupt)

    p = _command(
        kinds, "robust", "where the robustness claim holds: methods × α × epochs × seeds × attack × ε",
        "Train every method (ERM among them) at every α × epochs × seed, with the same loop and settings as\n"
        "'robust-eval train' (each mixing method at the cell's α; label smoothing keeps its factor), attack\n"
        "each white box with every attack at every ε on the same test examples, and judge the paper's claim\n"
        "(the method lowers the attack's error; its clean accuracy is no worse) per (attack, ε, epochs, α):\n"
        "method − ERM pooled over the seeds with a 95% interval, Holm over every cell. Prints where the claim\n"
        "holds and where it flips; the report is OUT/reports/sweeps/NAME/index.html. Cells run in this\n"
        "process, local worker processes (--jobs) or on Ray, like 'sweep corrupt'.",
        ["robust-eval sweep robust --methods erm mixup --alpha 0.1 0.2 0.5 1 2 --epochs 15 30 --seeds 0 1 2 \\\n"
         "      --attack fgsm pgd --eps 0.03 0.1 --name where",
         "robust-eval sweep robust --dataset digits --model mlp --methods erm mixup cutmix --alpha 0.2 1 \\\n"
         "      --epochs 5 --seeds 0 1 --attack fgsm --eps 0.05 0.1 --name tiny --jobs 2"],
        resume="finished cells are kept and an unfinished one resumes from its last epoch: run the same command again",
    )  # fmt: skip
    _add_dataset_model(p)
    p.add_argument("--methods", nargs="+", default=list(TRAIN.methods), metavar="M",
                   help=f"methods, erm among them (default: {' '.join(TRAIN.methods)})")  # fmt: skip
    p.add_argument("--alpha", type=float, nargs="+", required=True, metavar="A", help="α values (> 0)")
    p.add_argument("--epochs", type=int, nargs="+", required=True, metavar="E", help="training lengths")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S", help="(default: 0)")
    p.add_argument("--attack", nargs="+", default=["fgsm"], choices=tuple(ATTACKS), metavar="ATTACK",
                   help=f"white-box attacks: {', '.join(ATTACKS)} (default: fgsm)")  # fmt: skip
    p.add_argument("--eps", type=_eps, nargs="+", required=True, metavar="E", help="ε values, pixel units")
    p.add_argument("--steps", type=int, metavar="S", help="the iterative attacks' steps (default: each one's)")
    p.add_argument("--n", type=int, metavar="N", help="first N test examples (default: all)")
    p.add_argument("--name", required=True, help="sweep name; the same command again resumes it")
    _add_training(p)
    _add_executor(p)
    _add_where(p)
    p.set_defaults(handler=_cmd_sweep_robust)


def _add_executor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", default=DEFAULT_EXECUTOR, choices=Executor.values(),
                   help=f"(default: {DEFAULT_EXECUTOR})")  # fmt: skip
    p.add_argument("--jobs", type=int, default=DEFAULT_WORKERS, metavar="N",
                   help=f"local worker processes (default: {DEFAULT_WORKERS})")  # fmt: skip
    p.add_argument("--address", metavar="HOST:PORT", help="Ray cluster address, with --executor ray")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = _command(
        sub, "report", "the HTML report of a run, a group of seeds, or a comparison",
        "Write OUT/reports/RUN/index.html: one self-contained file (figures inline, nothing fetched) built\n"
        "from the results database and the run's files alone. It shows the summary, the paper's claims\n"
        "judged on the paired difference method − ERM for each method (interval, p-value, verdict, forest\n"
        "plot), training curves, robust accuracy, the diagnostics, the probe, the memorization sweep named like\n"
        "the run, and provenance.\n"
        "A stage not run yet is named with the command that fills it. For a group of seeds (made by\n"
        "'run --seeds' or 'train --seeds') the report pools the claims over the seeds.",
        ["robust-eval report", "robust-eval report --run mnist-5k-smallcnn-a1-s0 --out runs/",
         "robust-eval report --run quick                          # a group: the claims pooled over its seeds",
         "robust-eval report --compare quick-a1 quick-a8          # each claim's effect per run, side by side"],
        resume="nothing was written: run the same command again",
    )  # fmt: skip
    p.add_argument("--run", metavar="NAME", help="the run or group of seeds to report (default: the latest run)")
    p.add_argument("--compare", nargs="+", metavar="RUN", help="one report comparing two or more runs")
    _add_out(p)
    p.set_defaults(handler=_cmd_report)


def _add_run(sub: argparse._SubParsersAction) -> None:
    presets = "\n".join(f"  {name:<8} {p.summary}" for name, p in PRESETS.items())
    p = _command(
        sub, "run", "the main job end to end: train, diagnose, attack, probe, sweep, report",
        "Run every stage of a preset: paired training of its methods (+ surrogate), the diagnostics, FGSM,\n"
        "I-FGSM and PGD over an ε grid, the probes, a small memorization sweep, and the HTML report. At the end\n"
        "it prints the paper's claims with this run's verdicts (paired method − ERM differences) and where the\n"
        "report is.\n"
        "Run it again after an interruption: finished stages are skipped, an interrupted one resumes.\n"
        f"presets:\n{presets}",
        ["robust-eval run", "robust-eval run --seeds 0 1 2        # runs quick-s0..2 and their pooled report 'quick'",
         "robust-eval run --preset family      # ERM, mixup, CutMix, Manifold Mixup, label smoothing; seeds 0 1 2",
         "robust-eval run --preset paper --device cuda --download --out runs/"],
        resume="finished stages are kept and an interrupted one resumes: run the same command again",
    )  # fmt: skip
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=tuple(PRESETS), help=f"(default: {DEFAULT_PRESET})")
    p.add_argument("--run", metavar="NAME", help="run name, or with --seeds the group's (default: the preset's name)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S",
                   help="train and evaluate one pair per seed (runs NAME-sS) and report them pooled as group NAME: "
                        "verdicts then account for seed-to-seed variation (default: the preset's)")  # fmt: skip
    p.add_argument("--train-n", type=_train_n, metavar="N|all",
                   help="train on a stratified subset of N training images, or on all of them (default: the "
                        "preset's: fashion keeps a subset on a CPU and trains on all on a GPU)")  # fmt: skip
    p.add_argument("--download", action="store_true", help="allow fetching a missing dataset from the network")
    _add_where(p)
    p.set_defaults(handler=_cmd_run)


def _train_n(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of training images or 'all', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="robust-eval: robustness of ERM vs mixup models (Zhang et al., ICLR 2018), measured.",
        epilog=(
            "examples:\n  robust-eval run\n  robust-eval train --dataset mnist-5k --epochs 15\n"
            "  robust-eval fgsm --eps 0 0.03 0.1\n  robust-eval ifgsm --eps 0.03 --steps 10\n"
            "  robust-eval COMMAND --help"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    parser.set_defaults(usage_of=parser)
    _add_train(sub)
    for command in dict.fromkeys(info.subcommand for info in ATTACKS.values()):
        _add_attack(sub, command)
    _add_probe(sub)
    _add_diagnose(sub)
    _add_sweep(sub)
    _add_report(sub)
    _add_run(sub)
    return parser


# --- the commands ---------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .layout import Layout
    from .progress import EpochProgress
    from .train import train_run

    cfg = TrainConfig(
        dataset=args.dataset, model=args.model, epochs=args.epochs, alpha=args.alpha, seed=args.seed,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, dropout=args.dropout, width=args.width,
        methods=tuple(args.methods), train_n=args.train_n,
        **{info.param: getattr(args, info.param) for info in METHODS.values() if info.param not in (None, "alpha")},
    ).validate()  # fmt: skip
    plan = [(cfg, default_run_name(cfg) if args.run is None else args.run)]  # '' is refused as a name, not defaulted
    group = None
    if args.seeds is not None:
        from .pipeline import check_group

        if "--seed" in argv or any(a.startswith("--seed=") for a in argv):
            raise UsageError("give either --seed or --seeds, not both")
        group = default_run_name(cfg, seeded=False) if args.run is None else args.run
        runs = check_group(Layout(args.out), group, args.seeds)
        plan = [(dataclasses.replace(cfg, seed=s).validate(), r) for s, r in zip(args.seeds, runs, strict=True)]
    for i, (one, run) in enumerate(plan):
        if group is not None and i == 0:
            from .data import load_dataset
            from .results import ResultsDB

            load_dataset(
                cfg.dataset, root=args.data_root, download=args.download, split_seed=cfg.split_seed, train_n=cfg.train_n
            )  # nothing written before it
            Layout(args.out).root.mkdir(parents=True, exist_ok=True)
            with ResultsDB(Layout(args.out).database) as db:
                db.record_group(group, [r for _, r in plan])
        with EpochProgress(total=one.epochs * len(one.members), desc=f"train {run}") as progress:
            result = train_run(one, run=run, out=args.out, device=args.device, resume=args.resume,
                               data_root=args.data_root, download=args.download, argv=[PROG, *argv],
                               on_epoch=progress.update, on_start=progress.start)  # fmt: skip
        methods = ", ".join(one.describe(m) for m in one.methods)
        print(f"run {run}: {one.dataset}, {one.model}, {one.epochs} epochs, {methods}, seed {one.seed}")
        print(f"{'model':<16} {'test acc':>9} {'train loss':>11} {'images/s':>9}")
        for member, m in result.final.items():
            print(f"{member:<16} {m['test_acc']:>9.2%} {m['train_loss']:>11.4f} {m['images_per_s']:>9,.0f}")
        print(f"checkpoints: {Layout(result.out).run_dir(run)}")
    if group is not None:
        print(f"group {group}: runs {', '.join(r for _, r in plan)}; pooled report: robust-eval report --run {group}")
    return 0


def _cmd_attack(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .evaluation import evaluate_run
    from .progress import Progress

    cfg = AttackConfig(
        attack=attack_named(args.attack, getattr(args, "loss", "ce")), eps=tuple(args.eps),
        steps=getattr(args, "steps", None), step_size=getattr(args, "step_size", None), mode=args.mode,
        backend=args.backend, n=args.n, batch_size=args.batch_size, restarts=getattr(args, "restarts", 1),
        precision=getattr(args, "precision", "fp32"), compile=getattr(args, "compile", False),
    ).validate()  # fmt: skip
    with Progress(args.attack, "images") as bar:
        ev = evaluate_run(cfg, out=args.out, run=args.run, source=args.source, device=args.device,
                          data_root=args.data_root, progress=bar)  # fmt: skip
    if args.json:
        for model, clean in ev.clean.items():
            source = {"source": ev.source} if cfg.mode != "white" else {}  # the white box has no other source
            record = {
                "run": ev.run, "attack": cfg.attack, "backend": cfg.backend, **source, "model": model,
                "clean_top1": clean["top1"], "clean_top5": clean["top5"],
                "results": [r.as_dict() for r in ev.rows if r.model == model],
                "flags": [f for f in ev.flags if f["model"] == model],
                "indicators": [i.as_dict() for i in ev.indicators if i.model == model],
            }  # fmt: skip
            print(_json(record))
        return 0
    print(_attack_table(ev))
    return 0


def _attack_table(ev: Evaluation) -> str:
    cfg, attack = ev.spec, ev.attack
    what = ATTACKS[cfg.attack].label
    if ATTACKS[cfg.attack].iterative:
        size = ATTACKS[cfg.attack].default_step_size if cfg.step_size is None else f"{cfg.step_size:g}"
        what += f", {attack.steps} steps of {size}"
    n = next(iter(ev.clean.values()))["n"]
    black = f"; black box crafted on {ev.source}" if cfg.mode != "white" else ""
    lines = [f"{what} on run {ev.run} ({ev.dataset} test, n={n}{black}, backend {cfg.backend})"]
    cols = [(r.mode, r.eps) for r in ev.rows if r.model == "erm"]
    failed = [f for f in ev.flags if f.get("status", "failed") == "failed"]
    noise = [f for f in ev.flags if f.get("status") == "noise"]
    flagged = {(f["model"], f["mode"], f["eps"]) for f in failed if f["attack"] == cfg.attack}
    width = max(8, *(len(m) for m in ev.clean))
    header = f"{'model':<{width}} {'clean':>7}" + "".join(f" {f'{m} {e:.4g}':>12}" for m, e in cols)
    lines += [header]
    for model, clean in ev.clean.items():
        cells = {(r.mode, r.eps): r for r in ev.rows if r.model == model}
        line = f"{model:<{width}} {clean['top1']:>7.2%}"
        for key in cols:
            mark = "!" if (model, *key) in flagged else " "
            line += f" {cells[key].top1:>11.2%}{mark}"
        lines.append(line)
    lines.append("top-1 accuracy; 95% Wilson intervals, top-5 and errors are in reports/results.sqlite (or --json)")
    if failed:
        lines.append(f"WARNING: {len(failed)} sanity check(s) failed, significantly (marked !):")
        lines += [f"  - {f['check']}: {ATTACKS[f['attack']].label if f['attack'] in ATTACKS else f['attack']} "
                  f"{f['model']} {f['mode']} ε={f['eps']:g}: {f['detail']}" for f in failed]  # fmt: skip
    else:
        lines.append("sanity checks: none failed (ε=0 = clean, monotone in ε, black ≥ white, strong ≤ I-FGSM ≤ FGSM)")
    if noise:
        lines.append(f"  ({len(noise)} ordering difference(s) within sampling noise: see the report)")
    fired = [i for i in ev.indicators if i.status == "fired"]
    if not ev.indicators and cfg.mode != "black":
        lines.append(f"attack-failure indicators: not measured (they read the native loop's trace; backend "
                     f"{cfg.backend})")  # fmt: skip
    if ev.indicators:
        from .indicators import INDICATORS

        if fired:
            lines.append(f"WARNING: {len(fired)} attack-failure indicator(s) fired:")
            lines += [f"  - {INDICATORS[i.name].label}: {i.model} ε={i.eps:g}: {i.detail}. {INDICATORS[i.name].advice}"
                      for i in fired]  # fmt: skip
        else:
            names = sorted({i.name for i in ev.indicators})
            lines.append(f"attack-failure indicators: none fired ({', '.join(names)})")
    return "\n".join(lines)


def _cmd_probe(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .probing import probe_run, summary
    from .progress import Progress
    from .tables import table_lambdas

    cfg = ProbeConfig(pairs=args.pairs, lambdas=args.lambdas, same_class=args.same_class, split=args.split).validate()
    with Progress("probe", "pairs") as bar:
        result = probe_run(cfg, out=args.out, run=args.run, device=args.device, data_root=args.data_root,
                           progress=bar)  # fmt: skip
    if args.json:
        print(_json(summary(result)))
        return 0
    kind = "of different classes" if cfg.same_class == "exclude" else "(same-class pairs allowed)"
    print(f"probe of run {result.run}: {cfg.pairs} {cfg.split} pairs {kind}, drawn from seed {result.seed}")
    models = list(result.curves)
    width = max(10, *(len(m) for m in models))
    shown = table_lambdas(result.lambdas)
    print(f"{'% miss, ‖∇‖':<{width}}" + "".join(f" {f'λ {result.lambdas[t]:.2f}':>15}" for t in shown))
    for model in models:
        curve = result.curves[model]
        print(f"{model:<{width}}" + "".join(f" {curve['miss_rate'][t]:>7.2%} {curve['grad_norm'][t]:>7.3g}"
                                            for t in shown))  # fmt: skip
    print(f"all {cfg.lambdas} λ with 95% intervals: reports/results.sqlite (table probe_results) or --json")
    if cfg.same_class == "exclude":
        print("pairs are of different classes; --same-class include allows pairs of one class")
    print(f"figure: {result.figure}")
    return 0


def _cmd_diagnose(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .config import DiagnoseConfig
    from .diagnosing import diagnose_run
    from .progress import Progress

    cfg = DiagnoseConfig(eps=None if args.eps is None else tuple(args.eps), n=args.n).validate()
    with Progress("diagnose", "images") as bar:
        result = diagnose_run(cfg, out=args.out, run=args.run, device=args.device, data_root=args.data_root,
                              progress=bar)  # fmt: skip
    if args.json:
        print(_json({"run": result.run, "n": result.n, "seed": result.seed, "eps": list(result.eps),
                     "models": result.rows}))  # fmt: skip
        return 0
    print(f"diagnostics of run {result.run} on {result.n} test examples (random sign noise from seed {result.seed})")
    print(diagnostics_table(result.rows, result.eps))
    print("ECE: expected calibration error, 15 bins; margin: true-class logit minus the best other; ‖∇‖: the input "
          "gradient of each example's loss (=0: exactly zero, no sign to follow). Tiny gradients at confident points "
          "make FGSM optimistic: compare it with PGD and APGD-DLR.")  # fmt: skip
    return 0


def diagnostics_table(rows: dict[str, dict[str, float]], eps: Sequence[float]) -> str:
    """The diagnostics as a plain-text table: one line per model."""
    width = max(8, *(len(m) for m in rows))
    noise = [f"noise {e:.3g}" for e in eps]
    head = (f"{'model':<{width}} {'clean':>7} {'ECE':>6} {'margin':>7} {'‖∇‖ med':>9} {'‖∇‖ p90':>9} {'<1e-6':>6} "
            f"{'=0':>6}")  # fmt: skip
    lines = [head + "".join(f" {h:>11}" for h in noise)]
    for model, r in rows.items():
        line = (f"{model:<{width}} {r['clean_acc']:>7.2%} {r['ece']:>6.3f} {r['median_margin']:>7.2f} "
                f"{r['grad_norm_median']:>9.2e} {r['grad_norm_p90']:>9.2e} {r['grad_underflow']:>6.1%} "
                f"{r['grad_zero']:>6.1%}")  # fmt: skip
        lines.append(line + "".join(f" {r[f'noise_acc@{e:g}']:>11.2%}" for e in eps))
    return "\n".join(lines)


def _cmd_sweep_robust(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .config import RobustSweepConfig
    from .progress import Progress
    from .robust_sweep import run_robust_sweep

    cfg = RobustSweepConfig(
        dataset=args.dataset, model=args.model, methods=tuple(args.methods), alpha=tuple(args.alpha),
        epochs=tuple(args.epochs), seeds=tuple(args.seeds), attacks=tuple(args.attack), eps=tuple(args.eps),
        steps=args.steps, n=args.n, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        width=args.width, train_n=args.train_n,
    ).validate()  # fmt: skip
    total = len(cfg.cells())
    with Progress(f"sweep {args.name}", "epochs") as bar:

        def report(result: dict) -> None:
            c = result["cell"]
            bar.log(f"done α {c['alpha']:g}, {c['epochs']} epochs, seed {c['seed']} ({total} cells in the grid)")

        result = run_robust_sweep(cfg, name=args.name, out=args.out, executor=args.executor, jobs=args.jobs,
                                  address=args.address, device=args.device, data_root=args.data_root,
                                  on_cell=report, progress=bar)  # fmt: skip
    print(f"sweep {args.name}: {cfg.dataset}, {cfg.model}, method − ERM pooled over seeds {list(cfg.seeds)}, "
          "paired on the same test examples, Holm over every cell")  # fmt: skip
    for line in result.sentences:
        print(f"  {line}")
    print(f"report: {result.report.resolve().as_uri()}")
    return 0


def _cmd_sweep_corrupt(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .progress import Progress
    from .sweep import run_sweep
    from .tables import table2

    cfg = SweepConfig(
        dataset=args.dataset, model=args.model, noise=tuple(args.noise), alpha=tuple(args.alpha),
        dropout=tuple(args.dropout), epochs=args.epochs, seeds=tuple(args.seeds), batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, width=args.width,
        methods=tuple(m for m in args.methods if m != "erm"), smoothing=tuple(args.smoothing), train_n=args.train_n,
    ).validate()  # fmt: skip
    total = len(cfg.jobs())
    with Progress(f"sweep {args.name}", "epochs") as bar:

        def report(result: dict) -> None:
            last = result["history"][-1]
            corrupted = "—" if last["train_corrupted_err"] is None else f"{last['train_corrupted_err']:.2%}"
            bar.log(f"done {Job(**result['job']).describe()}: test err {last['test_err']:.2%}, "
                    f"corrupted-label train err {corrupted} ({total} jobs in the grid)")  # fmt: skip

        result = run_sweep(cfg, name=args.name, out=args.out, executor=args.executor, jobs=args.jobs,
                           address=args.address, device=args.device, data_root=args.data_root,
                           on_job=report, progress=bar)  # fmt: skip
    what = f"{cfg.dataset}, {cfg.model}, {cfg.epochs} epochs, seeds {list(cfg.seeds)}"
    spread = "mean ± std over seeds" if len(cfg.seeds) > 1 else "1 seed: no spread"
    print(f"sweep {args.name}: {what} (error %, {spread})")
    print(
        f"{'noise':>5}  {'method':<34} {'test best':>12} {'test last':>12} {'train real':>12} {'train corrupted':>15}"
    )

    for row in table2(result.jobs):

        def cell(v: tuple[float, float] | None, width: int, seeds: int = row["seeds"]) -> str:
            if v is None:
                return f"{'—':>{width}}"
            return f"{f'{v[0]:.2f} ± {v[1]:.2f}' if seeds > 1 else f'{v[0]:.2f}':>{width}}"

        print(
            f"{row['noise']:>5.0%}  {row['method']:<34} {cell(row['best_test_err'], 12)}"
            f" {cell(row['last_test_err'], 12)} {cell(row['train_real_err'], 12)}"
            f" {cell(row['train_corrupted_err'], 15)}"
        )
    print("train corrupted: error on the corrupted examples against their corrupted labels (near 0 = memorized)")
    if result.figure is not None:
        print(f"curves: {result.figure}")
    return 0


def _cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .report import build, build_comparison

    if args.compare is not None:
        print(build_comparison(args.out, args.compare))
    else:
        print(build(out=args.out, run=args.run))
    return 0


def _print_claims(claims: Sequence[Any]) -> None:
    """The claims as `robust-eval run` prints them: verdict, paired effect with its interval, where."""
    from .claims import format_p, seeds_statement

    for c in claims:
        if c.effect is None:
            print(f"  {c.verdict:<14} {c.claim} ({c.note})")
            continue
        scale, fmt = (100, "{:+.2f}") if c.unit == "%" else (1, "{:+.3g}")
        e = c.effect
        effect = f"{fmt.format(scale * e.diff)} [{fmt.format(scale * e.lo)}, {fmt.format(scale * e.hi)}]"
        unit = " points" if c.unit == "%" else ""
        p = f"p = {format_p(c.p_value)} (Holm {format_p(c.p_holm)})"
        print(f"  {c.verdict:<14} {c.claim}: {c.method} − erm {effect}{unit}, {p}; {c.where}"
              f"{'; ' + c.holds if c.holds else ''}")  # fmt: skip
    print(f"  {seeds_statement(claims)}")


def _cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .claims import strong_attack_verdicts
    from .config import preset
    from .pipeline import run_name, run_pipeline
    from .report import collect, group_claims, run_claims

    p = preset(args.preset)
    if args.train_n is not None:
        p = dataclasses.replace(p, train_n=None if args.train_n == "all" else args.train_n, subset_on_gpu=True)
    seeds = args.seeds if args.seeds is not None else p.seeds
    if seeds is not None:
        from .pipeline import run_group

        group, runs, path = run_group(p, seeds, out=args.out, run=args.run, device=args.device,
                                      data_root=args.data_root, download=args.download, argv=[PROG, *argv])  # fmt: skip
        datas = [collect(args.out, r) for r in runs]
        print(f"group {group} (runs {', '.join(runs)}): the paper's claims, paired, pooled over the seeds")
        _print_claims(group_claims(datas))
        print("does the FGSM gain survive a strong attack? (per seed, paired on the same examples)")
        for d in datas:
            for v in strong_attack_verdicts(d["attack_rows"], d["worst_case"], d["claim_eps"], d["compared"]):
                print(f"  {d['run']}, {v.method}, {v.mode} box: {v.sentence}")
        print(f"report: {path.resolve().as_uri()}")
        return 0
    path = run_pipeline(p, out=args.out, run=args.run, device=args.device, data_root=args.data_root,
                        download=args.download, argv=[PROG, *argv])  # fmt: skip
    run = run_name(p, args.run)
    data = collect(args.out, run)
    print(f"run {run}: the paper's claims, paired on the same examples (rule and figures in the report)")
    _print_claims(run_claims(data))
    print("does the FGSM gain survive a strong attack? (paired, on the same examples)")
    for v in strong_attack_verdicts(data["attack_rows"], data["worst_case"], data["claim_eps"], data["compared"]):
        print(f"  {v.method}, {v.mode} box: {v.sentence}")
    print(f"report: {path.resolve().as_uri()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):  # `robust-eval` or `robust-eval sweep` alone: say what is missing
        prog = args.usage_of.prog
        (sub,) = (a for a in args.usage_of._actions if isinstance(a, argparse._SubParsersAction))
        print(f"{prog}: error: a command is required, one of: {', '.join(sub.choices)} (see '{prog} --help')",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        return args.handler(args, argv)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; {args.resume_hint}", file=sys.stderr)
        return 130
    except OSError as exc:
        import errno

        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" while writing {exc.filename!r}" if exc.filename else ""
        print(f"{PROG}: error: the disk is full{where}; every file is written atomically, so what finished is "
              f"kept and nothing is half-written: free some space, then {args.resume_hint.split(': ', 1)[-1]}",
              file=sys.stderr)  # fmt: skip
        return 2
