"""Progress display for long work: a tqdm bar on a terminal, one line per step otherwise (logs, CI)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class EpochProgress:
    """`update(member, epoch, metrics)` after each member's epoch; use as a context manager."""

    def __init__(self, total: int, desc: str) -> None:
        self.interactive = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, unit="epoch", disable=not self.interactive, dynamic_ncols=True)
        self.latest: dict[str, str] = {}

    def update(self, member: str, epoch: int, metrics: dict[str, Any]) -> None:
        self.latest[member] = f"{metrics['test_acc']:.1%}"
        if self.interactive:
            self.bar.set_postfix(self.latest, refresh=False)
            self.bar.update(1)
        else:
            print(
                f"epoch {epoch:>3} {member:<9} loss {metrics['train_loss']:.4f}  train {metrics['train_acc']:.2%}"
                f"  test {metrics['test_acc']:.2%}  {metrics['seconds']:.1f}s",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
