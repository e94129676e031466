"""Model registry. Every model takes images in [0, 1] and normalizes inside itself.

The first layer of each model is `Normalize`, which holds the dataset's mean/std as buffers; so ε,
clipping and interpolation all live in pixel space (the RobustBench convention). Models are built by
name with JSON-able keyword arguments, and `build_model` records both on the model (`model.spec`), which
is what a checkpoint stores to rebuild it (the nanoGPT habit: weights plus the config that made them).

| name              | what                                                                  |
|-------------------|-----------------------------------------------------------------------|
| `mlp`             | 2x128 ReLU MLP: the paper's UCI network                              |
| `smallcnn`        | LeNet-sized CNN: two 3x3 conv + max-pool stages, one 128-unit hidden layer |
| `preact-resnet18` | the paper's CIFAR PreAct ResNet-18 (He et al. 2016), `width` = first stage's channels |

`dropout` p > 0 adds dropout after each hidden ReLU of `mlp`/`smallcnn`, and in `preact-resnet18` one
dropout per block after the ReLU between its two convolutions (the paper's Table 2 placement).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from robustbench_mixup.settings.config import DEFAULT_WIDTH, MAX_WIDTH
from robustbench_mixup.settings.errors import UsageError


class Normalize(nn.Module):
    """(x - mean) / std per channel; mean/std are buffers, so they travel with the weights."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))  # a 2x2 window's positions, in row-major order


def _corners(x: torch.Tensor) -> list[torch.Tensor]:
    return [x[..., i::2, j::2] for i, j in _CORNERS]


class _MaxPool2x2Function(torch.autograd.Function):
    """2x2/stride-2 max pooling of an even-sized input, the gradient routed to the window's first maximum
    in row-major order, as `F.max_pool2d` routes it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        a, b, c, _ = corners = _corners(x)
        out = torch.maximum(torch.maximum(a, b), torch.maximum(corners[2], corners[3]))
        # Index of the first corner equal to the maximum, by arithmetic (torch.where and masked_fill are
        # several times slower here): 0 if a is it, else 1 if b is, else 2 if c is, else 3.
        u8 = torch.uint8
        which = (a != out).to(u8) * (1 + (b != out).to(u8) * (1 + (c != out).to(u8)))
        ctx.save_for_backward(which)
        ctx.in_shape = x.shape
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (which,) = ctx.saved_tensors
        n, c, h, w = ctx.in_shape
        windows = grad.new_zeros(n, c, h // 2, w // 2, 4)  # each window's 4 positions, row-major
        windows.scatter_(-1, which.long().unsqueeze(-1), grad.unsqueeze(-1))
        return windows.view(n, c, h // 2, w // 2, 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


class MaxPool2x2(nn.Module):
    """`nn.MaxPool2d(2)`, same values and same gradients, fast on the CPU.

    torch's CPU max-pool kernel for standard (NCHW) layout took 53% of a smallcnn forward pass (18 ms
    for a 250x32x28x28 batch, against 2.3 ms for the element-wise maximum of the window's four strided
    corners; torch 2.14.1, 2 cores). The CPU keeps NCHW because a channels_last convolution backward
    can hang there. CUDA, and odd sizes, use torch's kernel. Inputs are assumed free of NaN (the values
    propagate; the gradient's route may differ from torch's).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.ndim != 4 or x.shape[-2] % 2 or x.shape[-1] % 2:
            return nn.functional.max_pool2d(x, 2)
        if torch.is_grad_enabled() and x.requires_grad:
            return _MaxPool2x2Function.apply(x)
        a, b, c, d = _corners(x)
        return torch.maximum(torch.maximum(a, b), torch.maximum(c, d))


def _dropout(p: float) -> nn.Module:
    # Identity at p = 0 keeps the state dict and the random streams of a dropout-free model unchanged.
    return nn.Dropout(p) if p > 0 else nn.Identity()


class MLP(nn.Module):
    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        dropout: float = 0.0,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        self.net = nn.Sequential(
            Normalize(mean, std),
            nn.Flatten(),
            nn.Linear(c * h * w, hidden),
            nn.ReLU(),
            _dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            _dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def mixing_layers(self) -> list[nn.Module]:
        """The hidden layers Manifold Mixup may mix at: the output of each hidden block."""
        return [self.net[4], self.net[7]]


class SmallCNN(nn.Module):
    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        self.net = nn.Sequential(
            Normalize(mean, std),
            nn.Conv2d(c, 32, 3, padding=1),
            nn.ReLU(),
            MaxPool2x2(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            MaxPool2x2(),
            nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), 128),
            nn.ReLU(),
            _dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def mixing_layers(self) -> list[nn.Module]:
        """The hidden layers Manifold Mixup may mix at: the output of each convolutional stage."""
        return [self.net[3], self.net[6]]


class PreActBlock(nn.Module):
    """BN-ReLU-conv, BN-ReLU-[dropout]-conv, plus the shortcut (a 1x1 conv when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.drop = _dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        # Pre-activation: a projection shortcut sees the normalized input, an identity one the raw input.
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.drop(torch.relu(self.bn2(out))))
        return out + skip


class PreActResNet18(nn.Module):
    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        dropout: float = 0.0,
        width: int = DEFAULT_WIDTH,
    ) -> None:
        super().__init__()
        c = in_shape[0]
        self.norm = Normalize(mean, std)
        self.stem = nn.Conv2d(c, width, 3, padding=1, bias=False)
        blocks, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            blocks += [PreActBlock(cin, cout, stride, dropout), PreActBlock(cout, cout, 1, dropout)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.stem(self.norm(x)))
        out = torch.relu(self.bn(out)).mean(dim=(2, 3))  # global average pool: any input size works
        return self.head(out)

    def mixing_layers(self) -> list[nn.Module]:
        """The hidden layers Manifold Mixup may mix at: the outputs of the first two stages (Verma et al.
        mix PreAct ResNet-18 at k ∈ {0, 1, 2}: the input or after stage 1 or 2)."""
        return [self.blocks[1], self.blocks[3]]


def mixing_layers(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs Manifold Mixup may mix (the input aside): the model's `mixing_layers()`
    where it declares them, none otherwise (any other model is mixed at its input only)."""
    declared = getattr(model, "mixing_layers", None)
    return list(declared()) if callable(declared) else []


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "smallcnn": SmallCNN,
    "preact-resnet18": PreActResNet18,
}


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds a model: the registry name and JSON-able constructor arguments."""

    name: str
    kwargs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# What a checkpoint may ask for: far beyond any model of the suite, far below what would exhaust memory.
MAX_INPUTS = 3 * 512 * 512  # C·H·W
MAX_CLASSES = 100_000
MAX_HIDDEN = 8192


def check_model_spec(name: object, kwargs: dict[str, Any]) -> None:
    """Raise UsageError unless (`name`, `kwargs`) are constructor arguments this suite could have written:
    known keys, the right types, sizes in range. Checked before a model is built from a stored file."""
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    allowed = set(inspect.signature(MODELS[name]).parameters)  # what the model's constructor takes
    unknown = set(kwargs) - allowed
    if unknown or not {"in_shape", "num_classes", "mean", "std"} <= set(kwargs):
        raise UsageError(f"model {name!r}: arguments {sorted(kwargs)} are not {sorted(allowed)}")

    def is_int(v: object, lo: int, hi: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    def is_num(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    shape = kwargs["in_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(is_int(d, 1, MAX_INPUTS) for d in shape)
            and math.prod(shape) <= MAX_INPUTS):  # fmt: skip
        raise UsageError(f"in_shape must be [C, H, W] of positive ints with C·H·W ≤ {MAX_INPUTS:,}, got {shape!r}")
    if not is_int(kwargs["num_classes"], 1, MAX_CLASSES):
        raise UsageError(f"num_classes must be an int in [1, {MAX_CLASSES:,}], got {kwargs['num_classes']!r}")
    for key in ("mean", "std"):
        v = kwargs[key]
        if not (isinstance(v, list) and len(v) == shape[0] and all(is_num(x) for x in v)):
            raise UsageError(f"{key} must be {shape[0]} finite numbers (one per channel), got {v!r}")
    if not all(x > 0 for x in kwargs["std"]):
        raise UsageError(f"std must be > 0, got {kwargs['std']!r}")
    dropout = kwargs.get("dropout", 0.0)
    if not (is_num(dropout) and 0 <= dropout < 1):
        raise UsageError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if "width" in kwargs and not is_int(kwargs["width"], 1, MAX_WIDTH):
        raise UsageError(f"width must be an int in [1, {MAX_WIDTH}], got {kwargs['width']!r}")
    if "hidden" in kwargs and not is_int(kwargs["hidden"], 1, MAX_HIDDEN):
        raise UsageError(f"hidden must be an int in [1, {MAX_HIDDEN}], got {kwargs['hidden']!r}")


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build registry model `name` with constructor `kwargs` and record them as `model.spec`.

    Common kwargs: `in_shape` (C, H, W), `num_classes`, `mean`, `std` (per channel), `dropout`;
    `preact-resnet18` also takes `width` (default `config.DEFAULT_WIDTH`).
    """
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    dropout = kwargs.get("dropout", 0.0)
    if not 0.0 <= float(dropout) < 1.0:
        raise UsageError(f"dropout must be in [0, 1), got {dropout}")
    try:
        model = MODELS[name](**kwargs)
    except TypeError as exc:
        raise UsageError(f"model {name!r} does not accept these arguments: {exc}") from None
    model.spec = ModelSpec(name, dict(kwargs))
    return model


def model_for_dataset(name: str, dataset: Any, *, dropout: float = 0.0, **options: Any) -> nn.Module:
    """Build `name` shaped for `dataset` (a `data.Dataset`): input shape, classes, mean/std."""
    return build_model(
        name,
        in_shape=list(dataset.image_shape),
        num_classes=dataset.num_classes,
        mean=list(dataset.mean),
        std=list(dataset.std),
        dropout=float(dropout),
        **options,
    )
