"""The command line, `robust-eval`: parse, validate, dispatch. No science lives here.

Exit status: 0 success; 2 bad arguments or unusable input (one line on stderr, nothing written);
1 an unexpected internal error; 130 interrupted (finished epochs are kept: re-run with --resume).
torch is imported only inside the command that needs it, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from . import __version__
from .names import DATASETS, DEVICES, MODELS

if TYPE_CHECKING:  # typing only: importing evaluation would pull in torch
    from .evaluation import Evaluation

PROG = "robust-eval"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong and where to look) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _add_dataset_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default="mnist-5k", metavar="D", help=f"one of: {', '.join(DATASETS)} (default: mnist-5k)"
    )
    p.add_argument("--model", default="smallcnn", metavar="M", help=f"one of: {', '.join(MODELS)} (default: smallcnn)")


def _add_where(p: argparse.ArgumentParser) -> None:
    """Where outputs go, what computes, where data lives: the same three options on every command."""
    p.add_argument(
        "--out", default=".", metavar="DIR", help="output root for checkpoints/, attacks/, reports/ (default: .)"
    )
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto = cuda when available (default: auto)")
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="where datasets live (default: $ROBUST_EVAL_DATA or ~/.cache/robust-eval/data)",
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a paired ERM/mixup run (plus its black-box surrogate)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train three models on one dataset: 'erm' and 'mixup' from the same initial weights on the\n"
            "same batches (only the mixing differs), and 'surrogate', an independent ERM model (seed+1)\n"
            "that later serves as the black-box attack source. Checkpoints are written every epoch to\n"
            "OUT/checkpoints/RUN/; metrics go to OUT/reports/results.sqlite."
        ),
        epilog=(
            "examples:\n"
            "  robust-eval train                                   # mnist-5k, smallcnn, 15 epochs, α=1\n"
            "  robust-eval train --dataset digits --model mlp --epochs 5 --run digits-mlp\n"
            "  robust-eval train --dataset cifar10 --model preact-resnet18 --epochs 200 --device cuda\n"
            "  robust-eval train --run digits-mlp --dataset digits --model mlp --epochs 5 --resume"
        ),
    )
    _add_dataset_model(p)
    p.add_argument(
        "--epochs", type=int, default=15, metavar="E", help="epochs; lr /10 at 50%% and 75%% of them (default: 15)"
    )
    p.add_argument("--alpha", type=float, default=1.0, metavar="A", help="mixup's Beta(α, α); 0 = ERM (default: 1.0)")
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of erm/mixup; surrogate uses S+1 (default: 0)"
    )
    p.add_argument("--run", metavar="NAME", help="run name (default: DATASET-MODEL-aALPHA-sSEED)")
    p.add_argument("--batch-size", type=int, default=128, metavar="B", help="(default: 128)")
    p.add_argument("--lr", type=float, default=0.1, help="initial SGD learning rate, momentum 0.9 (default: 0.1)")
    p.add_argument("--weight-decay", type=float, default=1e-4, metavar="WD", help="(default: 1e-4)")
    p.add_argument("--dropout", type=float, default=0.0, metavar="P", help="dropout p in [0, 1) (default: 0)")
    p.add_argument("--width", type=int, metavar="W", help="preact-resnet18 first-stage channels (default: 64)")
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


def _add_attack(sub: argparse._SubParsersAction, attack: str) -> None:
    iterative = attack == "ifgsm"
    name = "I-FGSM" if iterative else "FGSM"
    p = sub.add_parser(
        attack,
        help=f"white- and black-box {name} evaluation of a trained run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            f"Attack a trained run's 'erm' and 'mixup' models with {name} on the test split.\n"
            "White box: each model is attacked with its own gradients. Black box (transfer, the paper's\n"
            "Table 3): examples crafted on the run's 'surrogate' (or --source) are classified by both.\n"
            "Prints clean and robust top-1 accuracy per ε; every result (top-1/top-5, 95% Wilson intervals)\n"
            "and any gradient-masking sanity flag goes to OUT/reports/results.sqlite."
            + ("\nSteps use the paper's equal step size ε/steps unless --step-size is given." if iterative else "")
        ),
        epilog=(
            "examples:\n"
            + (
                "  robust-eval ifgsm --eps 0.03 --steps 10\n"
                "  robust-eval ifgsm --eps 4/255 8/255 --step-size 0.001 --n 500\n"
                if iterative
                else "  robust-eval fgsm --eps 0.03\n  robust-eval fgsm --eps 0 0.01 0.03 0.1 --mode white --json\n"
                "  robust-eval fgsm --eps 8/255 --run mnist-5k-smallcnn-a1-s0 --backend torchattacks\n"
            )
        ),
    )
    p.add_argument(
        "--eps", type=_eps, nargs="+", required=True, metavar="ε", help="one or more ε in [0, 1]; 8/255 works"
    )
    if iterative:
        p.add_argument("--steps", type=int, default=10, help="iterations (default: 10)")
        p.add_argument("--step-size", type=float, metavar="S", help="step size (default: ε / steps)")
    p.add_argument("--run", metavar="NAME", help="the run to evaluate (default: the latest)")
    p.add_argument("--mode", default="both", choices=("white", "black", "both"), help="(default: both)")
    p.add_argument("--source", metavar="CKPT", help="black-box source checkpoint (default: the run's surrogate)")
    p.add_argument("--n", type=int, metavar="N", help="first N test examples (default: all)")
    p.add_argument("--batch-size", type=int, default=256, metavar="B", help="(default: 256)")
    p.add_argument("--backend", default="native", metavar="B", help="native, torchattacks or foolbox (default: native)")
    p.add_argument("--json", action="store_true", help="one JSON object per model on stdout instead of the table")
    _add_where(p)
    p.set_defaults(handler=_cmd_attack, attack=attack)


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="interpolation miss rate and input-gradient norms between training pairs (Figure 2)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Probe a trained run's 'erm' and 'mixup' models at x = λ·x_i + (1−λ)·x_j for pairs of training\n"
            "examples drawn from the run's seed (the same pairs for both models, and on every call):\n"
            "the share of pairs predicted as neither y_i nor y_j (95% Wilson interval) and the mean norm of\n"
            "the input gradient of each pair's soft-target loss (95% bootstrap interval), per λ.\n"
            "Rows go to OUT/reports/results.sqlite, the two curves to OUT/reports/RUN/probe-SPLIT-SAMECLASS.png."
        ),
        epilog=(
            "examples:\n"
            "  robust-eval probe\n"
            "  robust-eval probe --run mnist-5k-smallcnn-a1-s0 --pairs 5000 --lambdas 41\n"
            "  robust-eval probe --same-class include --split test --json"
        ),
    )
    p.add_argument("--run", metavar="NAME", help="the run to probe (default: the latest)")
    p.add_argument("--pairs", type=int, default=2000, metavar="P", help="pairs of examples (default: 2000)")
    p.add_argument("--lambdas", type=int, default=21, metavar="L", help="λ grid size, linspace(0, 1, L) (default: 21)")
    p.add_argument("--same-class", default="exclude", choices=("exclude", "include"),
                   help="pairs of one class too? (default: exclude)")  # fmt: skip
    p.add_argument("--split", default="train", choices=("train", "test"), help="(default: train)")
    p.add_argument("--json", action="store_true", help="print the full curves as one JSON object")
    _add_where(p)
    p.set_defaults(handler=_cmd_probe)


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser("sweep", help="parameter sweeps (corrupted-label memorization)")
    kinds = sweep.add_subparsers(title="sweeps", metavar="KIND", parser_class=_Parser)
    p = kinds.add_parser(
        "corrupt",
        help="the corrupted-label memorization experiment (the paper's Table 2)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train one model per (noise, α, dropout, seed) on training labels of which a fraction has been\n"
            "replaced by wrong ones (test labels stay clean), with the same loop as 'robust-eval train'\n"
            "(α = 0 is ERM). Each (noise, seed) draws ONE corrupted label set shared by every method.\n"
            "Prints a table shaped like the paper's Table 2 (mean ± std over seeds, %); per-epoch metrics go\n"
            "to OUT/reports/results.sqlite and the curves to OUT/reports/sweeps/NAME/curves.png.\n"
            "Interrupted? Run the same command again: finished jobs are kept, unfinished ones resume."
        ),
        epilog=(
            "examples:\n"
            "  robust-eval sweep corrupt --dataset mnist-5k --noise 0.5 --alpha 0 8 32 --epochs 60 --name mem\n"
            "  robust-eval sweep corrupt --dataset digits --model mlp --noise 0.2 0.8 --alpha 0 1 --dropout 0 0.5 \\\n"
            "      --epochs 20 --seeds 0 1 2 --jobs 2 --name grid\n"
            "  robust-eval sweep corrupt ... --executor ray --address 10.0.0.5:6379"
        ),
    )
    _add_dataset_model(p)
    p.add_argument("--noise", type=float, nargs="+", required=True, metavar="F", help="fractions of corrupted labels")
    p.add_argument("--alpha", type=float, nargs="+", required=True, metavar="A", help="mixup α values; 0 = ERM")
    p.add_argument("--dropout", type=float, nargs="+", default=[0.0], metavar="P", help="dropout p values (default: 0)")
    p.add_argument("--epochs", type=int, required=True, metavar="E")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S", help="(default: 0)")
    p.add_argument("--name", required=True, help="sweep name; the same command again resumes it")
    p.add_argument("--batch-size", type=int, default=128, metavar="B", help="(default: 128)")
    p.add_argument("--lr", type=float, default=0.1, help="(default: 0.1)")
    p.add_argument("--weight-decay", type=float, default=1e-4, metavar="WD", help="(default: 1e-4)")
    p.add_argument("--executor", default="local", choices=("local", "ray"), help="(default: local)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="local worker processes (default: 1)")
    p.add_argument("--address", metavar="HOST:PORT", help="Ray cluster address, with --executor ray")
    _add_where(p)
    p.set_defaults(handler=_cmd_sweep_corrupt)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="the HTML report of a run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Write OUT/reports/RUN/index.html: one self-contained file (figures inline, nothing fetched) built\n"
            "from the results database and the run's files alone. It shows the summary, the paper's claims\n"
            "with this run's verdicts, training curves, robust accuracy, the probe, the memorization sweep\n"
            "named like the run, and provenance. A stage not run yet is named with the command that fills it."
        ),
        epilog=(
            "examples:\n  robust-eval report\n  robust-eval report --run mnist-5k-smallcnn-a1-s0 --out runs/\n"
            "  robust-eval report --compare quick-s0 quick-s1 quick-s2   # side by side; means over seeds"
        ),
    )
    p.add_argument("--run", metavar="NAME", help="the run to report (default: the latest)")
    p.add_argument("--compare", nargs="+", metavar="RUN", help="one report comparing two or more runs")
    p.add_argument("--out", default=".", metavar="DIR", help="output root (default: .)")
    p.set_defaults(handler=_cmd_report)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the main job end to end: train, attack, probe, sweep, report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run every stage of a preset: paired training (+ surrogate), FGSM and I-FGSM white and black box\n"
            "over an ε grid, the probes, a small memorization sweep, and the HTML report, whose path it prints.\n"
            "Run it again after an interruption: finished stages are skipped, an interrupted one resumes.\n"
            "presets: quick (mnist-5k, smallcnn; about 6 min on 2 CPU cores), fashion (fashion-mnist, for a\n"
            "stronger CPU or a GPU), paper (cifar10, preact-resnet18, 200 epochs; for a GPU)."
        ),
        epilog="examples:\n  robust-eval run\n  robust-eval run --preset paper --device cuda --download --out runs/",
    )
    p.add_argument("--preset", default="quick", choices=("quick", "fashion", "paper"), help="(default: quick)")
    p.add_argument("--run", metavar="NAME", help="run name (default: the preset's name)")
    p.add_argument("--download", action="store_true", help="allow fetching a missing dataset from the network")
    _add_where(p)
    p.set_defaults(handler=_cmd_run)


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
    _add_train(sub)
    _add_attack(sub, "fgsm")
    _add_attack(sub, "ifgsm")
    _add_probe(sub)
    _add_sweep(sub)
    _add_report(sub)
    _add_run(sub)
    return parser


def _cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .progress import EpochProgress
    from .train import MEMBERS, TrainConfig, train_run

    cfg = TrainConfig(
        dataset=args.dataset,
        model=args.model,
        epochs=args.epochs,
        alpha=args.alpha,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        dropout=args.dropout,
        width=args.width,
    ).validate()
    run = args.run or f"{cfg.dataset}-{cfg.model}-a{cfg.alpha:g}-s{cfg.seed}"
    with EpochProgress(total=cfg.epochs * len(MEMBERS), desc=f"train {run}") as progress:
        result = train_run(
            cfg,
            run=run,
            out=args.out,
            device=args.device,
            resume=args.resume,
            data_root=args.data_root,
            download=args.download,
            argv=[PROG, *argv],
            on_epoch=progress.update,
        )
    print(f"run {run}: {cfg.dataset}, {cfg.model}, {cfg.epochs} epochs, α={cfg.alpha:g}, seed {cfg.seed}")
    print(f"{'model':<10} {'test acc':>9} {'train loss':>11} {'images/s':>9}")
    for member, m in result.final.items():
        print(f"{member:<10} {m['test_acc']:>9.2%} {m['train_loss']:>11.4f} {m['images_per_s']:>9,.0f}")
    print(f"checkpoints: {result.out / 'checkpoints' / run}")
    return 0


def _cmd_attack(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import json

    from .evaluation import AttackSpec, evaluate_run

    spec = AttackSpec(
        attack=args.attack, eps=tuple(args.eps), steps=getattr(args, "steps", 10),
        step_size=getattr(args, "step_size", None), mode=args.mode, backend=args.backend, n=args.n,
        batch_size=args.batch_size,
    ).validate()  # fmt: skip
    ev = evaluate_run(
        spec, out=args.out, run=args.run, source=args.source, device=args.device, data_root=args.data_root
    )
    if args.json:
        for model, clean in ev.clean.items():
            rows = [r.as_dict() for r in ev.rows if r.model == model]
            flags = [f for f in ev.flags if f["model"] == model]
            record = {
                "run": ev.run,
                "attack": spec.attack,
                "backend": spec.backend,
                "source": ev.source,
                "model": model,
            }
            print(
                json.dumps(
                    record | {"clean_top1": clean["top1"], "clean_top5": clean["top5"], "results": rows, "flags": flags}
                )
            )
        return 0
    print(_attack_table(ev))
    return 0


def _attack_table(ev: Evaluation) -> str:
    spec = ev.spec
    what = spec.attack.upper().replace("IFGSM", "I-FGSM")
    if spec.attack == "ifgsm":
        what += f", {spec.steps} steps of " + ("ε/steps" if spec.step_size is None else f"{spec.step_size:g}")
    n = next(iter(ev.clean.values()))["n"]
    lines = [
        f"{what} on run {ev.run} ({ev.dataset} test, n={n}; black box crafted on {ev.source}, backend {spec.backend})"
    ]
    cols = [(r.mode, r.eps) for r in ev.rows if r.model == "erm"]
    flagged = {(f["model"], f["mode"], f["eps"]) for f in ev.flags}
    header = f"{'model':<8} {'clean':>7}" + "".join(f" {f'{m} {e:.4g}':>12}" for m, e in cols)
    lines += [header]
    for model, clean in ev.clean.items():
        cells = {(r.mode, r.eps): r for r in ev.rows if r.model == model}
        line = f"{model:<8} {clean['top1']:>7.2%}"
        for key in cols:
            mark = "!" if (model, *key) in flagged else " "
            line += f" {cells[key].top1:>11.2%}{mark}"
        lines.append(line)
    lines.append("top-1 accuracy; 95% Wilson intervals, top-5 and errors are in reports/results.sqlite (or --json)")
    if ev.flags:
        lines.append(f"WARNING: {len(ev.flags)} gradient-masking sanity check(s) failed (marked !):")
        lines += [f"  - {f['check']}: {f['model']} {f['mode']} ε={f['eps']:g}: {f['detail']}" for f in ev.flags]
    else:
        lines.append(
            "sanity checks: all passed (ε=0 = clean, monotone in ε, black ≥ white, I-FGSM ≤ FGSM where both ran)"
        )
    return "\n".join(lines)


def _cmd_probe(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import json

    from .probing import ProbeSpec, probe_run, summary, table_lambdas

    spec = ProbeSpec(pairs=args.pairs, lambdas=args.lambdas, same_class=args.same_class, split=args.split).validate()
    result = probe_run(spec, out=args.out, run=args.run, device=args.device, data_root=args.data_root)
    if args.json:
        print(json.dumps(summary(result)))
        return 0
    kind = "of different classes" if spec.same_class == "exclude" else "(same-class pairs allowed)"
    print(f"probe of run {result.run}: {spec.pairs} {spec.split} pairs {kind}, drawn from seed {result.seed}")
    print(f"{'λ':>5}  {'erm miss':>9} {'mixup miss':>10}  {'erm ‖∇‖':>9} {'mixup ‖∇‖':>9}")
    erm, mix = result.curves["erm"], result.curves["mixup"]
    for t in table_lambdas(result.lambdas):
        print(
            f"{result.lambdas[t]:>5.2f}  {erm['miss_rate'][t]:>9.2%} {mix['miss_rate'][t]:>10.2%}"
            f"  {erm['grad_norm'][t]:>9.4f} {mix['grad_norm'][t]:>9.4f}"
        )
    print(f"all {spec.lambdas} λ with 95% intervals: reports/results.sqlite (table probe_results) or --json")
    if spec.same_class == "exclude":
        print("pairs are of different classes; --same-class include allows pairs of one class")
    print(f"figure: {result.figure}")
    return 0


def _cmd_sweep_corrupt(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .sweep import SweepConfig, run_sweep, table2

    cfg = SweepConfig(
        dataset=args.dataset, model=args.model, noise=tuple(args.noise), alpha=tuple(args.alpha),
        dropout=tuple(args.dropout), epochs=args.epochs, seeds=tuple(args.seeds), batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay,
    ).validate()  # fmt: skip
    total = len(cfg.jobs())

    def report(result: dict) -> None:
        last = result["history"][-1]
        print(
            f"done {result['job']} : test err {last['test_err']:.2%}, corrupted-label train err "
            f"{(last['train_corrupted_err'] or 0):.2%} ({total} jobs in the grid)",
            file=sys.stderr,
            flush=True,
        )

    result = run_sweep(
        cfg, name=args.name, out=args.out, executor=args.executor, jobs=args.jobs, address=args.address,
        device=args.device, data_root=args.data_root, on_job=report,
    )  # fmt: skip
    what = f"{cfg.dataset}, {cfg.model}, {cfg.epochs} epochs, seeds {list(cfg.seeds)}"
    print(f"sweep {args.name}: {what} (error %, mean ± std)")
    print(
        f"{'noise':>5}  {'method':<34} {'test best':>12} {'test last':>12} {'train real':>12} {'train corrupted':>15}"
    )

    def cell(v: tuple[float, float] | None, width: int) -> str:
        return f"{'—':>{width}}" if v is None else f"{f'{v[0]:.2f} ± {v[1]:.2f}':>{width}}"

    for row in table2(result.jobs):
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


def _cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .pipeline import run_pipeline
    from .presets import preset

    path = run_pipeline(
        preset(args.preset), out=args.out, run=args.run, device=args.device, data_root=args.data_root,
        download=args.download, argv=[PROG, *argv],
    )  # fmt: skip
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    from .errors import UsageError

    try:
        return args.handler(args, argv)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished epochs are saved: run the same command with --resume", file=sys.stderr)
        return 130
