"""The command line, `robust-eval`: parse, validate, dispatch. No science lives here.

Exit status: 0 success; 2 bad arguments or unusable input (one line on stderr, nothing written);
1 an unexpected internal error; 130 interrupted (finished epochs are kept: re-run with --resume).
torch is imported only inside the command that needs it, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__
from .names import DATASETS, DEVICES, MODELS

PROG = "robust-eval"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong and where to look) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


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
    p.add_argument(
        "--dataset", default="mnist-5k", metavar="D", help=f"one of: {', '.join(DATASETS)} (default: mnist-5k)"
    )
    p.add_argument("--model", default="smallcnn", metavar="M", help=f"one of: {', '.join(MODELS)} (default: smallcnn)")
    p.add_argument(
        "--epochs", type=int, default=15, metavar="E", help="epochs; lr /10 at 50%% and 75%% of them (default: 15)"
    )
    p.add_argument("--alpha", type=float, default=1.0, metavar="A", help="mixup's Beta(α, α); 0 = ERM (default: 1.0)")
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of erm/mixup; surrogate uses S+1 (default: 0)"
    )
    p.add_argument("--run", metavar="NAME", help="run name (default: DATASET-MODEL-aALPHA-sSEED)")
    p.add_argument("--out", default=".", metavar="DIR", help="output root for checkpoints/ and reports/ (default: .)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto = cuda when available (default: auto)")
    p.add_argument("--batch-size", type=int, default=128, metavar="B", help="(default: 128)")
    p.add_argument("--lr", type=float, default=0.1, help="initial SGD learning rate, momentum 0.9 (default: 0.1)")
    p.add_argument("--weight-decay", type=float, default=1e-4, metavar="WD", help="(default: 1e-4)")
    p.add_argument("--dropout", type=float, default=0.0, metavar="P", help="dropout p in [0, 1) (default: 0)")
    p.add_argument("--width", type=int, metavar="W", help="preact-resnet18 first-stage channels (default: 64)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same settings")
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="where datasets live (default $ROBUST_EVAL_DATA or ~/.cache/robust-eval/data)",
    )
    p.add_argument("--download", action="store_true", help="allow fetching a missing dataset from the network")
    p.set_defaults(handler=_cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="robust-eval: robustness of ERM vs mixup models (Zhang et al., ICLR 2018), measured.",
        epilog="examples:\n  robust-eval train --dataset mnist-5k --epochs 15\n  robust-eval train --help",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    _add_train(sub)
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
