"""The settings of the two sweeps: the memorization sweep's jobs (noise × α × dropout × seed) and the
robustness sweep's cells (method × α × epochs × seed)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

from robustbench_mixup.settings.config import ATTACKS, BASELINE, METHODS, AttackConfig, MethodName, TrainConfig
from robustbench_mixup.settings.errors import UsageError


@dataclass(frozen=True)
class Job:
    """One point of a sweep's grid."""

    noise: float
    alpha: float  # the method's parameter (label smoothing's factor); 0 is ERM whatever the method
    dropout: float
    seed: int
    mixing: str = "mixup"  # the training method (a key of METHODS other than erm)

    @property
    def key(self) -> str:
        """`noise0.5-alpha8-dropout0-seed0` for mixup (and ERM), `noise0.5-cutmix8-dropout0-seed0` otherwise."""
        what = "alpha" if self.mixing == "mixup" else self.mixing
        return f"noise{self.noise:g}-{what}{self.alpha:g}-dropout{self.dropout:g}-seed{self.seed}"

    @property
    def method(self) -> str:
        """The paper's row label: ERM, ERM + dropout, mixup or mixup + dropout (another method by its label)."""
        if self.alpha == 0:
            return "ERM" if self.dropout == 0 else f"ERM + dropout (p={self.dropout:g})"
        info = METHODS[self.mixing]
        setting = f"{info.symbol}={self.alpha:g}"
        return (
            f"{info.label} ({setting})"
            if self.dropout == 0
            else f"{info.label} + dropout ({setting}, p={self.dropout:g})"
        )

    def describe(self) -> str:
        """For people: 'noise 50%, α 8, seed 0' (dropout named when used; a method other than mixup named)."""
        dropout = f", dropout {self.dropout:g}" if self.dropout else ""
        info = METHODS[self.mixing]
        what = f"α {self.alpha:g}" if self.mixing == "mixup" else f"{info.label} {info.symbol} {self.alpha:g}"
        return f"noise {self.noise:.0%}, {what}{dropout}, seed {self.seed}"


@dataclass(frozen=True)
class SweepConfig:
    dataset: str
    model: str
    noise: tuple[float, ...]
    alpha: tuple[float, ...]
    epochs: int
    dropout: tuple[float, ...] = (0.0,)
    seeds: tuple[int, ...] = (0,)
    batch_size: int = TrainConfig.batch_size  # the training settings' defaults are TrainConfig's
    lr: float = TrainConfig.lr
    weight_decay: float = TrainConfig.weight_decay
    width: int | None = None
    methods: tuple[str, ...] = ("mixup",)  # trained at every α > 0 of `alpha` (label smoothing: every `smoothing`)
    smoothing: tuple[float, ...] = (0.1,)  # label smoothing's factors, when it is one of `methods`
    train_n: int | None = None  # every job on this stratified subset of the training images (None: all)

    def validate(self) -> SweepConfig:
        if not self.methods or any(m not in METHODS or m == BASELINE for m in self.methods):
            others = ", ".join(m for m in METHODS if m != BASELINE)
            raise UsageError(f"--methods takes one or more of {others} (ERM is the α = 0 jobs, always trained), "
                             f"got {' '.join(self.methods) or 'none'}")  # fmt: skip
        if len(set(self.methods)) != len(self.methods):
            raise UsageError(f"--methods lists a method more than once: {' '.join(self.methods)}")
        if self.factor_methods() and (not self.smoothing or len(set(self.smoothing)) != len(self.smoothing)):
            raise UsageError(f"--smoothing needs one or more distinct values, got {' '.join(map(str, self.smoothing))}")
        if not self.factor_methods() and tuple(self.smoothing) != (0.1,):
            raise UsageError("--smoothing sets label-smoothing's factors, but --methods does not include it")
        for name, grid in (("alpha", self.alpha), ("noise", self.noise), ("smoothing", self.smoothing)):
            if len({f"{v:g}" for v in grid}) != len(set(grid)):
                raise UsageError(f"--{name} lists values that print alike ({' '.join(map(str, grid))}): they would "
                                 "share one job's name")  # fmt: skip
        for name, grid in (("noise", self.noise), ("alpha", self.alpha), ("dropout", self.dropout),
                           ("seeds", self.seeds)):  # fmt: skip
            if not grid:
                raise UsageError(f"--{name} needs at least one value: the grid is empty")
        if any(not (math.isfinite(v) and 0 <= v <= 1) for v in self.noise):
            raise UsageError(f"--noise values must lie in [0, 1], got {list(self.noise)}")
        for name, grid in (("noise", self.noise), ("alpha", self.alpha), ("dropout", self.dropout),
                           ("seeds", self.seeds)):  # fmt: skip
            twice = sorted({v for v in grid if grid.count(v) > 1})
            if twice:
                values = ", ".join(f"{v:g}" for v in twice)
                raise UsageError(f"--{name} lists {values} more than once: give each value once")
        for job in self.jobs():  # every other setting is a training setting, checked where training checks it
            self.job_config(job).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        # as recorded before sweeps had a width, or methods: those sweeps still resume
        for key, default in (("width", None), ("methods", ["mixup"]), ("smoothing", [0.1]), ("train_n", None)):
            if d[key] == default:
                del d[key]
        if not self.factor_methods():
            d.pop("smoothing", None)  # no job reads it
        return d

    def jobs(self) -> list[Job]:
        """ERM (α = 0) once per (noise, dropout, seed), each method at every α > 0 (label smoothing at every
        factor of `smoothing`), in grid order."""
        factors = self.factor_methods()
        mixing = [m for m in self.methods if m not in factors]
        jobs = []
        for n, a, p, s in itertools.product(self.noise, self.alpha, self.dropout, self.seeds):
            jobs += [Job(n, a, p, s)] if a == 0 else [Job(n, a, p, s, m) for m in mixing]
        for m in factors:
            grid = itertools.product(self.noise, self.smoothing, self.dropout, self.seeds)
            jobs += [Job(n, v, p, s, m) for n, v, p, s in grid if v > 0]
        return jobs

    def factor_methods(self) -> list[str]:
        """The methods whose parameter is a factor, not a Beta α (label smoothing): they run on `smoothing`."""
        return [m for m in self.methods if METHODS[m].param is not None and not METHODS[m].beta]

    def job_config(self, job: Job) -> TrainConfig:
        """The training settings of one job: mixup's as they always were; another method's parameter in its
        own field, that method beside ERM."""
        common = {"dataset": self.dataset, "model": self.model, "epochs": self.epochs, "seed": job.seed,
                  "batch_size": self.batch_size, "lr": self.lr, "weight_decay": self.weight_decay,
                  "dropout": job.dropout, "width": self.width, "train_n": self.train_n}  # fmt: skip
        if job.mixing == "mixup" or job.alpha == 0:
            return TrainConfig(alpha=job.alpha, **common)
        return TrainConfig(methods=(BASELINE, job.mixing), **common).with_params({job.mixing: job.alpha})


@dataclass(frozen=True)
class Cell:
    """One point of a robustness sweep: a run of every method at one α, number of epochs and seed."""

    alpha: float
    epochs: int
    seed: int

    @property
    def key(self) -> str:
        return f"alpha{self.alpha:g}-epochs{self.epochs}-seed{self.seed}"


@dataclass(frozen=True)
class RobustSweepConfig:
    """Where does a claim hold? Every method (ERM among them) trained at every α × epochs × seed, then
    attacked white box by every attack at every ε on the first `n` test examples. The mixing methods of a
    cell share its α; label smoothing keeps its factor (`TrainConfig.smoothing`)."""

    dataset: str
    model: str
    methods: tuple[str, ...]
    alpha: tuple[float, ...]
    epochs: tuple[int, ...]
    seeds: tuple[int, ...] = (0,)
    attacks: tuple[str, ...] = ("fgsm",)
    eps: tuple[float, ...] = (0.1,)
    steps: int | None = None  # the iterative attacks' steps (None: each attack's default)
    n: int | None = None  # first n test examples (None: all)
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    weight_decay: float = TrainConfig.weight_decay
    width: int | None = None
    train_n: int | None = None  # every cell on this stratified subset of the training images (None: all)

    def validate(self) -> RobustSweepConfig:
        for m in self.methods:
            MethodName.check(m, "method")
        for name, grid in (("alpha", self.alpha), ("epochs", self.epochs), ("seeds", self.seeds),
                           ("attack", self.attacks), ("eps", self.eps)):  # fmt: skip
            if not grid:
                raise UsageError(f"--{name} needs at least one value: the grid is empty")
            if len({f"{v:g}" if isinstance(v, float) else v for v in grid}) != len(grid):
                raise UsageError(f"--{name} lists a value more than once (or values that print alike): "
                                 f"{' '.join(map(str, grid))}")  # fmt: skip
        if any(not (math.isfinite(a) and a > 0) for a in self.alpha):
            raise UsageError(
                f"--alpha values must be > 0 (ERM is the erm method), got {' '.join(map(str, self.alpha))}"
            )
        if any(not (math.isfinite(e) and 0 < e <= 1) for e in self.eps):
            raise UsageError(f"--eps values must lie in (0, 1] (pixel units; clean accuracy is always judged), got "
                             f"{' '.join(map(str, self.eps))}")  # fmt: skip
        for attack in self.attacks:
            if attack not in ATTACKS:
                raise UsageError(f"unknown attack {attack!r}: choose one of {', '.join(ATTACKS)}")
        if self.steps is not None and not any(ATTACKS[a].iterative for a in self.attacks):
            raise UsageError("--steps applies to the iterative attacks, and none is listed")
        for cfg in self.attack_configs():
            cfg.validate()
        for cell in self.cells():
            self.cell_config(cell).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        if self.train_n is None:
            del d["train_n"]  # as recorded before subsets existed
        return d

    def cells(self) -> list[Cell]:
        return [Cell(a, e, s) for a, e, s in itertools.product(self.alpha, self.epochs, self.seeds)]

    def cell_config(self, cell: Cell) -> TrainConfig:
        """The training settings of a cell: every method, each mixing method at the cell's α."""
        alphas = {m: cell.alpha for m in self.methods if METHODS[m].param is not None and METHODS[m].beta}
        return TrainConfig(dataset=self.dataset, model=self.model, epochs=cell.epochs, seed=cell.seed,
                           batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay, width=self.width,
                           methods=self.methods, train_n=self.train_n).with_params(alphas)  # fmt: skip

    def attack_configs(self) -> list[AttackConfig]:
        """Every attack, white box, at every ε, with `steps` for the iterative ones."""
        return [AttackConfig(a, self.eps, steps=self.steps if ATTACKS[a].iterative else None, mode="white", n=self.n)
                for a in self.attacks]  # fmt: skip


def with_methods(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sweep job rows, each with its paper-style `method` label added."""
    return [{**j, "method": Job(j["noise"], j["alpha"], j["dropout"], j["seed"], j.get("mixing", "mixup")).method}
            for j in jobs]  # fmt: skip
