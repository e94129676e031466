"""The command line, `robust-eval`: parse, validate, dispatch. No science lives here.

Every default, every `choices` list and every attack subcommand is read from `config` (the dataclasses,
the enums, the `ATTACKS` registry and the presets), so nothing is written twice. torch is imported only
inside the command that needs it, so `--help` answers at once.

Exit status: 0 success; 2 bad arguments or unusable input (one line on stderr, nothing written);
1 an unexpected internal error; 130 interrupted (what finished is kept: the message says how to go on).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from robustbench_mixup.cli.parser import build_parser
from robustbench_mixup.settings.config import PROG
from robustbench_mixup.settings.errors import UsageError


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
