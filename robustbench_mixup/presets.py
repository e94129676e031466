"""The presets of `robust-eval run`: every stage's settings, for one dataset and network.

| preset  | data, network                 | meant for                                   |
|---------|-------------------------------|---------------------------------------------|
| quick   | mnist-5k, smallcnn            | a laptop: all stages within 10 min on 2 CPU cores |
| fashion | fashion-mnist, smallcnn       | a stronger CPU run, or a GPU                |
| paper   | cifar10, preact-resnet18      | a GPU: the paper's protocol, 200 epochs     |
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class Preset:
    name: str
    dataset: str
    model: str
    epochs: int
    alpha: float
    fgsm_eps: tuple[float, ...]
    ifgsm_eps: tuple[float, ...]
    ifgsm_steps: int
    probe_pairs: int
    probe_lambdas: int
    sweep_noise: tuple[float, ...]
    sweep_alpha: tuple[float, ...]
    sweep_epochs: int
    attack_n: int | None = None  # first N test examples for the attacks (None: all)


PRESETS = {
    "quick": Preset(
        name="quick", dataset="mnist-5k", model="smallcnn", epochs=15, alpha=1.0,
        fgsm_eps=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2), ifgsm_eps=(0.02, 0.05, 0.1), ifgsm_steps=10,
        probe_pairs=2000, probe_lambdas=21, sweep_noise=(0.5,), sweep_alpha=(0.0, 8.0), sweep_epochs=40,
    ),
    "fashion": Preset(
        name="fashion", dataset="fashion-mnist", model="smallcnn", epochs=30, alpha=1.0,
        fgsm_eps=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2), ifgsm_eps=(0.02, 0.05, 0.1), ifgsm_steps=10,
        probe_pairs=5000, probe_lambdas=21, sweep_noise=(0.2, 0.5, 0.8), sweep_alpha=(0.0, 1.0, 8.0, 32.0),
        sweep_epochs=60,
    ),
    "paper": Preset(
        name="paper", dataset="cifar10", model="preact-resnet18", epochs=200, alpha=1.0,
        fgsm_eps=(0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255), ifgsm_eps=(4 / 255, 8 / 255), ifgsm_steps=10,
        probe_pairs=2000, probe_lambdas=21, sweep_noise=(0.2, 0.5, 0.8), sweep_alpha=(0.0, 1.0, 2.0, 8.0, 32.0),
        sweep_epochs=200,
    ),
}  # fmt: skip


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
