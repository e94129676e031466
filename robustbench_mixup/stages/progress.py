"""Progress a person can follow: a tqdm bar on a terminal, plain lines at a steady pace in a log.

Every long stage counts its work in its own units (epochs, images, pairs, jobs) through one `Meter`:
`start(total)` once the amount is known, `update(k)` as work is done. On a terminal that is a tqdm
bar; when stderr is a file or a pipe (a log, CI) it is one line every `every` seconds (done/total,
rate, time left) and one when the stage ends, so a log never goes quiet for minutes.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

from tqdm import tqdm


class Meter(Protocol):
    def start(self, total: int) -> None: ...

    def update(self, k: int = 1) -> None: ...


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """A `Meter` that shows itself; use as a context manager. `note(text)` sets a short status."""

    def __init__(
        self, desc: str, unit: str, *, total: int | None = None, every: float = 15.0, stream: TextIO | None = None,
        leave: bool = False,
    ) -> None:  # fmt: skip
        self.desc, self.unit, self.every = desc, unit, every
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty()
        self.total = total
        self.done = 0
        self.status = ""
        self.began = self.last = time.monotonic()
        self.bar: tqdm | None = None
        if self.interactive:
            self.bar = tqdm(total=total, desc=f"  {desc}", unit=f" {unit}", unit_scale=True, dynamic_ncols=True,
                            leave=leave, file=self.stream)  # fmt: skip

    def start(self, total: int) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.reset(total=total)

    def log(self, line: str) -> None:
        """A line that stays (above the bar on a terminal)."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def note(self, status: str) -> None:
        self.status = status
        if self.bar is not None:
            self.bar.set_postfix_str(status, refresh=False)

    def update(self, k: int = 1) -> None:
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line()

    def _line(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.began, 1e-9)
        rate = self.done / elapsed
        if final:
            text = f"  {self.desc}: {self.done:,} {self.unit} in {_duration(elapsed)} ({rate:,.1f} {self.unit}/s)"
        else:
            of = f"/{self.total:,}" if self.total else ""
            left = ""
            if self.total and rate > 0:
                left = f", about {_duration(max(self.total - self.done, 0) / rate)} left"
            text = f"  {self.desc}: {self.done:,}{of} {self.unit} ({rate:,.1f} {self.unit}/s{left})"
        if self.status:
            text += f"  {self.status}"
        print(text, file=self.stream, flush=True)

    def close(self, failed: bool = False) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.done and not failed:  # a failure's one line on stderr stays the only one
            self._line(final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(failed=exc_type is not None)


class EpochProgress(Progress):
    """Training progress: `update(member, epoch, metrics)` after each member's epoch.

    In a log every epoch is worth its own line (they come seconds to minutes apart), with its metrics.
    """

    def __init__(self, total: int, desc: str, *, stream: TextIO | None = None) -> None:
        super().__init__(desc, "epochs", total=total, stream=stream, leave=True)
        self.latest: dict[str, str] = {}

    def update(self, member: str, epoch: int, metrics: dict[str, Any]) -> None:  # type: ignore[override]
        self.done += 1
        self.latest[member] = f"{metrics['test_acc']:.1%}"
        if self.bar is not None:
            self.bar.set_postfix(self.latest, refresh=False)
            self.bar.update(1)
            return
        left = ""
        if self.total:
            rate = self.done / max(time.monotonic() - self.began, 1e-9)
            left = f"  [{self.done}/{self.total}, about {_duration((self.total - self.done) / rate)} left]"
        print(
            f"epoch {epoch:>3} {member:<9} loss {metrics['train_loss']:.4f}  train {metrics['train_acc']:.2%}"
            f"  test {metrics['test_acc']:.2%}  {metrics['seconds']:.1f}s{left}",
            file=self.stream,
            flush=True,
        )

    def close(self, failed: bool = False) -> None:
        if self.bar is not None:
            self.bar.close()
