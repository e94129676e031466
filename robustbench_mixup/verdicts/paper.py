"""The paper's own figures, as data, for the reports to show beside this suite's measurements.

Zhang, Cisse, Dauphin, Lopez-Paz. "mixup: Beyond Empirical Risk Minimization." ICLR 2018,
arXiv:1710.09412 (v2). Numbers are the paper's, in percent; nothing here is measured by the suite.
"""

from __future__ import annotations

from dataclasses import dataclass

CITATION = (
    'Zhang, Cisse, Dauphin, Lopez-Paz. "mixup: Beyond Empirical Risk Minimization." ICLR 2018, arXiv:1710.09412 (v2).'
)


@dataclass(frozen=True)
class MemorizationRow:
    """Table 2 (CIFAR-10, PreAct ResNet-18, 200 epochs): errors in %."""

    noise: float
    method: str
    test_best: float
    test_last: float
    train_real: float  # training error on the examples whose labels were kept, last epoch
    train_corrupted: float  # training error on the corrupted examples vs their corrupted labels, last epoch


TABLE2: tuple[MemorizationRow, ...] = (
    MemorizationRow(0.2, "ERM", 12.7, 16.6, 0.05, 0.28),
    MemorizationRow(0.2, "ERM + dropout (p=0.7)", 8.8, 10.4, 5.26, 83.55),
    MemorizationRow(0.2, "mixup (α=8)", 5.9, 6.4, 2.27, 86.32),
    MemorizationRow(0.2, "mixup + dropout (α=4, p=0.1)", 6.2, 6.2, 1.92, 85.02),
    MemorizationRow(0.5, "ERM", 18.8, 44.6, 0.26, 0.64),
    MemorizationRow(0.5, "ERM + dropout (p=0.8)", 14.1, 15.5, 12.71, 86.98),
    MemorizationRow(0.5, "mixup (α=32)", 11.3, 12.7, 5.84, 85.71),
    MemorizationRow(0.5, "mixup + dropout (α=8, p=0.3)", 10.9, 10.9, 7.56, 87.90),
    MemorizationRow(0.8, "ERM", 36.5, 73.9, 0.62, 0.83),
    MemorizationRow(0.8, "ERM + dropout (p=0.8)", 30.9, 35.1, 29.84, 86.37),
    MemorizationRow(0.8, "mixup (α=32)", 25.3, 30.9, 18.92, 85.44),
    MemorizationRow(0.8, "mixup + dropout (α=8, p=0.3)", 24.0, 24.8, 19.70, 87.67),
)
TABLE2_GRIDS = {
    "mixup α": (1, 2, 8, 32),
    "dropout p": (0.5, 0.7, 0.8, 0.9),
    "mixup + dropout α": (1, 2, 4, 8),
    "mixup + dropout p": (0.3, 0.5, 0.7),
}


@dataclass(frozen=True)
class AdversarialRow:
    """Table 3 (ImageNet, ResNet-101, ε = 4/255; I-FGSM: 10 steps of ε/10): classification error in %."""

    mode: str  # 'white' (each model its own gradients) | 'black' (crafted on ERM#1)
    metric: str  # 'top1' | 'top5'
    method: str  # 'ERM' | 'mixup'
    fgsm: float
    ifgsm: float


TABLE3: tuple[AdversarialRow, ...] = (
    AdversarialRow("white", "top1", "ERM", 90.7, 99.9),
    AdversarialRow("white", "top1", "mixup", 75.2, 99.6),
    AdversarialRow("white", "top5", "ERM", 63.1, 93.4),
    AdversarialRow("white", "top5", "mixup", 49.1, 95.8),
    AdversarialRow("black", "top1", "ERM", 57.0, 57.3),
    AdversarialRow("black", "top1", "mixup", 46.0, 40.9),
    AdversarialRow("black", "top5", "ERM", 24.8, 18.1),
    AdversarialRow("black", "top5", "mixup", 17.4, 11.8),
)
TABLE3_EPS = 4 / 255

# CIFAR test error % (section 3.2): (network, dataset) -> (ERM, mixup).
CIFAR_TEST_ERROR = {
    ("PreAct ResNet-18", "cifar10"): (5.6, 4.2),
    ("WRN-28-10", "cifar10"): (3.8, 2.7),
    ("DenseNet-BC-190", "cifar10"): (3.7, 2.7),
    ("PreAct ResNet-18", "cifar100"): (25.6, 21.1),
    ("WRN-28-10", "cifar100"): (19.4, 17.5),
    ("DenseNet-BC-190", "cifar100"): (19.0, 16.8),
}

# Figure 2 gives curves, no numbers: mixup is lower on both at every λ strictly between 0 and 1.
FIGURE2 = {
    "miss_rate": "mixup's miss rate is below ERM's at every λ strictly between 0 and 1 (axis 0-50 %)",
    "grad_norm": "mixup's input-gradient norm is below ERM's at every λ strictly between 0 and 1 (axis 0-0.5)",
}

PROTOCOL = {
    "optimizer": "SGD, momentum 0.9",
    "lr": "0.1, divided by 10 at epochs 100 and 150 of 200",
    "batch_size": 128,
    "weight_decay": 1e-4,
    "augmentation": "random crop (pad 4) + horizontal flip",
    "alpha_cifar": 1.0,
}


def table3(mode: str, metric: str, method: str) -> AdversarialRow:
    """The Table 3 row for (mode, metric, method)."""
    for row in TABLE3:
        if (row.mode, row.metric, row.method) == (mode, metric, method):
            return row
    raise KeyError((mode, metric, method))
