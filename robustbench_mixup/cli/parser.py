"""The argument parser: one subcommand per verb, defaults read from the settings' dataclasses."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from robustbench_mixup import __version__
from robustbench_mixup.cli.verbs import (
    _cmd_attack,
    _cmd_diagnose,
    _cmd_export,
    _cmd_import,
    _cmd_probe,
    _cmd_report,
    _cmd_run,
    _cmd_sweep_corrupt,
    _cmd_sweep_robust,
    _cmd_train,
    _param_dest,
)
from robustbench_mixup.settings.config import (
    ATTACKS,
    DATASETS,
    DEFAULT_DEVICE,
    DEFAULT_EXECUTOR,
    DEFAULT_OUT,
    DEFAULT_WIDTH,
    DEFAULT_WORKERS,
    DEVICES,
    METHODS,
    MODELS,
    PRECISIONS,
    PROG,
    AttackConfig,
    Backend,
    Executor,
    Mode,
    ProbeConfig,
    SameClass,
    Split,
    TrainConfig,
)
from robustbench_mixup.settings.presets import DEFAULT_PRESET, PRESETS
from robustbench_mixup.settings.sweeps import SweepConfig  # fmt: skip

# The configs' defaults, where each is written once.
TRAIN, PROBE = TrainConfig(), ProbeConfig()

ATTACK = AttackConfig("fgsm", ())

SWEEP = SweepConfig(TRAIN.dataset, TRAIN.model, noise=(), alpha=(), epochs=TRAIN.epochs)


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
            what = "Beta(α, α); 0 = ERM" if info.beta else "factor in [0, 1); 0 = ERM"
            default = TRAIN.param(name)
            p.add_argument(info.option, type=float, default=default, metavar="A" if info.beta else "S",
                           dest=_param_dest(name), help=f"{name}'s {what} (default: {default:g})")  # fmt: skip
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
    if "early_stop" in info.options:
        steps_line += ("\n--early-stop: an example leaves the attack at its first misclassified point (robust\n"
                       "accuracy counts it broken there, as AutoAttack does; the rest take the same steps),\n"
                       "which saves the steps spent on what is already broken. White box only; the presets\n"
                       "use it.")  # fmt: skip
    if len(names) > 1:
        steps_line += "\n--loss dlr attacks the difference-of-logits ratio, which does not saturate (≥ 3 classes)."
    eps = " ".join(info.example_eps)
    examples = [
        f"robust-eval {command} --eps {eps}",
        f"robust-eval {command} --eps 4/255 8/255 --mode white --json",
        f"robust-eval {command} --eps 8/255 --run mnist-5k-smallcnn-a1-s0 --backend torchattacks --n 500",
    ]
    steps_flag = "--queries" if command == "square" else "--steps"  # a search counts queries, not steps
    own = "scores (no gradient)" if command == "square" else "gradients"
    if info.iterative:
        tuned = " --restarts 5" if "restarts" in info.options else " --step-size 0.002"
        examples.insert(1, f"robust-eval {command} --eps 0.03 {steps_flag} {2 * info.default_steps}{tuned}")
    if "early_stop" in info.options:
        examples.insert(2, f"robust-eval {command} --eps 0.03 0.1 --mode white --early-stop")
    if len(names) > 1:
        examples.insert(2, f"robust-eval {command} --eps 0.03 --loss dlr")
    if "precision" in info.options:
        examples.append(f"robust-eval {command} --eps 0.03 --precision bf16   # faster, not exact: see README")
    p = _command(
        sub, command, f"white- and black-box {label} evaluation of a trained run",
        f"Attack a trained run's models ('erm', 'mixup', any other method) with {label} ({info.summary})\n"
        f"on the test split. White box: each model is attacked with its own {own}. Black box (transfer,\n"
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
        what = "forwards per example and restart, at most" if command == "square" else "iterations"
        p.add_argument(steps_flag, dest="steps", type=int, default=info.default_steps, metavar=steps_flag[2:].upper(),
                       help=f"{what} (default: {info.default_steps})")  # fmt: skip
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
    if "early_stop" in info.options:
        p.add_argument("--early-stop", action="store_true",
                       help="white box: stop attacking an example at its first misclassified point")  # fmt: skip
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


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = _command(
        sub, "export", "a run's results as a RobustBench-style entry, a CSV of outcomes, or JSON",
        "Write a run's stored results in another shape:\n"
        "  robustbench  one entry per model and ε shaped like a RobustBench leaderboard entry (dataset, Linf, ε,\n"
        "               architecture, clean and robust accuracy), plus n, 95% intervals, the attacks and steps,\n"
        "               the seeds and the failure indicators that fired. The robust accuracy is the worst case\n"
        "               over this run's white-box attacks at that ε, not AutoAttack's (autoattack_acc stays empty).\n"
        "  csv          every per-example outcome, clean and under each attack: one row per example.\n"
        "  json         the run's settings and every evaluation, outcomes included.\n"
        "The file goes to OUT/reports/RUN/export-FORMAT.json|csv, or to --output (which must not exist).",
        ["robust-eval export --run mine --format robustbench",
         "robust-eval export --run mine --format csv --output outcomes.csv"],
        resume="run the same command again",
    )  # fmt: skip
    p.add_argument("--run", metavar="NAME", help="the run to export (default: the latest)")
    p.add_argument("--format", default="robustbench", choices=("robustbench", "csv", "json"),
                   help="(default: robustbench)")  # fmt: skip
    p.add_argument("--output", metavar="FILE", help="where to write it (default: under OUT/reports/RUN/)")
    _add_out(p)
    p.set_defaults(handler=_cmd_export)


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
    p.add_argument("--jobs", type=int, metavar="N",
                   help="local worker processes of the memorization sweep (default: one per job, up to a core each "
                        "on the CPU; one on a GPU)")  # fmt: skip
    _add_where(p)
    p.set_defaults(handler=_cmd_run)


def _train_n(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of training images or 'all', got {text!r}") from None


def _role_path(text: str) -> tuple[str, str]:
    role, sep, path = text.partition("=")
    if not sep or not role:
        raise argparse.ArgumentTypeError(
            f"expected ROLE=PATH (--member erm=erm.pt, --source surrogate=src.pt), got {text!r}"
        )
    return role, path


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = _command(
        sub, "import", "make a run of models trained elsewhere (no training)",
        "Make a run of models you already have: each --member is a weights file (a safetensors state dict, or a\n"
        "PyTorch state dict read with torch.load(weights_only=True); nothing else is unpickled) of the architecture\n"
        "--arch, named by its role: 'erm' is the baseline every claim compares against, the others are methods\n"
        "(mixup, cutmix, ...). Every model takes [0, 1] images: declare the normalization its weights expect\n"
        "(--mean/--std, put inside the model) or --normalized if it normalizes itself (the package's own networks\n"
        "carry theirs in their weights). Each model is checked first (deterministic in eval mode, one logit per\n"
        "class, not probabilities, clearly above chance on the test set) and the run is written as the package's\n"
        "own checkpoints; every other command then takes --run NAME. Verdicts are paired on the same test\n"
        "examples, not on the same training.",
        ["robust-eval import --run mine --dataset mnist-5k --arch smallcnn --member erm=erm.pt --member mixup=mixup.pt",
         "robust-eval import --run tv --dataset cifar10 --arch torchvision:resnet18 --member erm=erm.safetensors \\\n"
         "      --member mixup=mixup.pt --source surrogate=other.pt --mean 0.491 0.482 0.447 --std 0.247 0.243 0.261",
         "robust-eval import --run own --dataset npz:test.npz --arch mynets:build --normalized \\\n"
         "      --member erm=erm.pt --member mixup=mixup.pt        # mynets.py in this folder",
         "robust-eval pgd --run mine --eps 0.1 --mode white    # then any command, on the run"],
        "run the same command again",
    )  # fmt: skip
    p.add_argument("--run", required=True, metavar="NAME", help="the new run's name")
    p.add_argument("--dataset", default=TRAIN.dataset, metavar="D",
                   help=f"the test set: {', '.join(DATASETS)}, npz:PATH (arrays images, labels; optionally "
                        f"train_images, train_labels) or folder:PATH (a folder of PNG/JPEG per class) "
                        f"(default: {TRAIN.dataset})")  # fmt: skip
    p.add_argument("--arch", required=True, metavar="ARCH",
                   help=f"the models' architecture: {', '.join(MODELS)}, torchvision:NAME (e.g. "
                        "torchvision:resnet18), timm:NAME (the [zoo] extra) or your own factory MODULE:FUNCTION "
                        "(e.g. mynets:build, called with num_classes= if it takes it; later commands import it "
                        "only when ROBUST_EVAL_FACTORIES names it)")  # fmt: skip
    p.add_argument("--member", action="append", type=_role_path, required=True, metavar="ROLE=PATH",
                   help="a model's weights by its role: erm=PATH (required) and one or more of mixup, cutmix, "
                        "manifold-mixup, label-smoothing")  # fmt: skip
    p.add_argument("--source", type=_role_path, metavar="surrogate=PATH",
                   help="the black-box source's weights (default: none, so only white-box attacks)")  # fmt: skip
    p.add_argument("--mean", type=float, nargs="+", metavar="M", help="per-channel mean the weights expect")
    p.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel std the weights expect")
    p.add_argument("--normalized", action="store_true", help="the models normalize their [0, 1] input themselves")
    p.add_argument("--force", action="store_true", help="keep a model whose clean accuracy is near chance")
    p.add_argument("--download", action="store_true", help="allow fetching a missing dataset from the network")
    _add_where(p)
    p.set_defaults(handler=_cmd_import)


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
    _add_import(sub)
    for command in dict.fromkeys(info.subcommand for info in ATTACKS.values()):
        _add_attack(sub, command)
    _add_probe(sub)
    _add_diagnose(sub)
    _add_sweep(sub)
    _add_report(sub)
    _add_export(sub)
    _add_run(sub)
    return parser
