"""The presets of `robust-eval run`: a dataset, a network, its methods and seeds, and the settings of every
stage, named so that one command reproduces a whole job."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from robustbench_mixup.settings.config import (
    BASELINE,
    DEFAULT_METHODS,
    METHODS,
    AttackConfig,
    DiagnoseConfig,
    ProbeConfig,
    TrainConfig,
    claim_eps,
    diagnose_eps,
)
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.sweeps import SweepConfig


@dataclass(frozen=True)
class Preset:
    """Every stage's settings of `robust-eval run`, for one dataset and network."""

    name: str
    dataset: str
    model: str
    epochs: int
    alpha: float
    attacks: tuple[AttackConfig, ...]  # one stage each, in this order, white and black box
    probe_pairs: int
    probe_lambdas: int
    sweep_noise: tuple[float, ...]
    sweep_alpha: tuple[float, ...]
    sweep_epochs: int
    summary: str = ""  # for --help
    seed: int = 0  # of the pair, and of the sweep's single seed: `robust-eval run --seeds` replaces it
    methods: tuple[str, ...] = DEFAULT_METHODS  # the members trained and compared with erm
    seeds: tuple[int, ...] | None = None  # a group of seeds by default (`robust-eval run` without --seeds)
    train_n: int | None = None  # a stratified training subset on a CPU (the report says so); a GPU trains on all
    subset_on_gpu: bool = False  # `train_n` on a GPU too (`robust-eval run --train-n N`)

    def on(self, device_type: str) -> Preset:
        """The preset as it runs on `device_type` ('cpu', 'cuda'): a GPU trains on the whole training split
        unless `subset_on_gpu`."""
        return self if device_type == "cpu" or self.subset_on_gpu else dataclasses.replace(self, train_n=None)

    @property
    def claim_eps(self) -> float:
        """The ε the attack claims are judged at (`CLAIM_EPS` of the dataset); every attack grid holds it."""
        return claim_eps(self.dataset)

    def train(self) -> TrainConfig:
        return TrainConfig(
            dataset=self.dataset,
            model=self.model,
            epochs=self.epochs,
            alpha=self.alpha,
            seed=self.seed,
            methods=self.methods,
            train_n=self.train_n,
        )

    def attack(self, name: str) -> AttackConfig:
        return next(a for a in self.attacks if a.attack == name)

    def probe(self) -> ProbeConfig:
        return ProbeConfig(pairs=self.probe_pairs, lambdas=self.probe_lambdas)

    def diagnose(self) -> DiagnoseConfig:
        return DiagnoseConfig(eps=diagnose_eps(self.dataset))

    def sweep(self) -> SweepConfig:
        """The memorization sweep: every method of the preset at every α > 0 of the grid (label smoothing
        at the training's factor)."""
        methods = tuple(m for m in self.methods if m != BASELINE) or ("mixup",)
        return SweepConfig(dataset=self.dataset, model=self.model, noise=self.sweep_noise, alpha=self.sweep_alpha,
                           epochs=self.sweep_epochs, seeds=(self.seed,), methods=methods,
                           smoothing=(TrainConfig.smoothing,), train_n=self.train_n)  # fmt: skip


_SMALL_EPS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
# AutoAttack's two APGD runs at the claim's ε, white box, stopping per example at its first success: with them
# the worst case is the union AutoAttack's standard version reports for its gradient attacks.
_AUTOATTACK_MNIST = tuple(AttackConfig(a, (claim_eps("mnist-5k"),), steps=100, mode="white", early_stop=True)
                          for a in ("apgd-ce", "apgd-dlr"))  # fmt: skip

PRESETS = {
    "quick": Preset(
        name="quick", dataset="mnist-5k", model="smallcnn", epochs=15, alpha=1.0,
        attacks=(AttackConfig("fgsm", _SMALL_EPS), AttackConfig("ifgsm", (0.05, 0.1), steps=10),
                 AttackConfig("pgd", (0.05, 0.1), steps=20, early_stop=True), *_AUTOATTACK_MNIST),
        probe_pairs=2000, probe_lambdas=21, sweep_noise=(0.5,), sweep_alpha=(0.0, 8.0), sweep_epochs=40,
        summary="mnist-5k, smallcnn, ERM and mixup; about 5.5 min on 2 CPU cores",
    ),
    "family": Preset(
        name="family", dataset="mnist-5k", model="smallcnn", epochs=15, alpha=1.0, methods=tuple(METHODS),
        attacks=(AttackConfig("fgsm", _SMALL_EPS), AttackConfig("ifgsm", (0.05, 0.1), steps=10),
                 AttackConfig("pgd", (0.05, 0.1), steps=20, mode="white", early_stop=True), *_AUTOATTACK_MNIST,
                 AttackConfig("square", (claim_eps("mnist-5k"),), steps=5000, mode="white")),
        probe_pairs=1000, probe_lambdas=21, sweep_noise=(0.5,), sweep_alpha=(0.0, 8.0), sweep_epochs=30,
        seeds=(0, 1, 2),
        summary="mnist-5k, smallcnn, the five methods, seeds 0 1 2 pooled; over an hour on 2 CPU cores (Square)",
    ),
    "fashion": Preset(
        name="fashion", dataset="fashion-mnist", model="smallcnn", epochs=15, alpha=1.0, methods=tuple(METHODS),
        attacks=(AttackConfig("fgsm", _SMALL_EPS, n=2000), AttackConfig("ifgsm", (0.05, 0.1), steps=10, n=2000),
                 AttackConfig("pgd", (0.05, 0.1), steps=20, n=2000, early_stop=True),
                 *(dataclasses.replace(a, n=2000) for a in _AUTOATTACK_MNIST)),
        probe_pairs=1000, probe_lambdas=21, sweep_noise=(0.5,), sweep_alpha=(0.0, 8.0), sweep_epochs=20,
        train_n=10_000,
        summary="fashion-mnist, smallcnn, the five methods; on a CPU a 10,000-image training subset (about "
                "42 min on 2 cores), on a GPU all 60,000",
    ),
    "paper": Preset(
        name="paper", dataset="cifar10", model="preact-resnet18", epochs=200, alpha=1.0,
        attacks=(AttackConfig("fgsm", (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)),
                 AttackConfig("ifgsm", (4 / 255, 8 / 255), steps=10),
                 AttackConfig("pgd", (4 / 255, 8 / 255, 16 / 255), steps=50, early_stop=True),
                 AttackConfig("apgd-ce", (4 / 255, 8 / 255, 16 / 255), steps=100, early_stop=True),
                 AttackConfig("apgd-dlr", (4 / 255, 8 / 255, 16 / 255), steps=100, early_stop=True),
                 AttackConfig("square", (claim_eps("cifar10"),), steps=5000, mode="white")),
        probe_pairs=2000, probe_lambdas=21, sweep_noise=(0.2, 0.5, 0.8), sweep_alpha=(0.0, 1.0, 2.0, 8.0, 32.0),
        sweep_epochs=200, summary="cifar10, preact-resnet18, 200 epochs; for a GPU",
    ),
}  # fmt: skip

DEFAULT_PRESET = "quick"


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_of(argv: list[str] | None) -> Preset | None:
    """The preset a run was made with, read from its recorded command line (None if not `robust-eval run`)."""
    if not argv or len(argv) < 2 or argv[1] != "run":
        return None
    name = DEFAULT_PRESET
    for i, word in enumerate(argv):
        if word == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
        elif word.startswith("--preset="):
            name = word.split("=", 1)[1]
    return PRESETS.get(name)
