"""Why a model is (not) robust: per-example diagnostics on the test points, and their summary.

- calibration: the expected calibration error of the top-1 confidence (Guo et al. 2017);
- margins: the true-class logit minus the best other logit (negative when misclassified);
- input gradients: ‖∇ₓ CE(f(x), y)‖₂ per example, the share below 1e-6 (a saturated softmax: the loss is
  flat around the point) and the share exactly 0 (no direction at all: a sign attack cannot move; gradient
  masking, Athalye et al. 2018). A tiny but non-zero gradient still has a sign, so FGSM still takes a full
  step of ε; what it says is that the loss is flat where the step starts, so a single linear step is a poor
  guide to the loss ε away;
- random noise: correctness under uniform random sign noise of each ε, to set beside the attacks'
  robust accuracy at the same ε (Fawzi et al. 2016: random noise is far weaker than adversarial noise).

`test_point_diagnostics` computes them all in float32 (no autocast), chunk by chunk, with the model
frozen in eval mode (input gradients only); its results are on the CPU and do not depend on the chunk
size or the device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from robustbench_mixup.learning import seeding
from robustbench_mixup.learning.devices import frozen, model_device
from robustbench_mixup.measures.gradients import input_gradient
from robustbench_mixup.measures.interpolation import MAX_POINTS

__all__ = [
    "ECE_BINS",
    "NOISE_STREAM",
    "UNDERFLOW",
    "Diagnostics",
    "expected_calibration_error",
    "logit_margins",
    "random_signs",
    "sign_noise",
    "test_point_diagnostics",
]

ECE_BINS = 15  # Guo et al. 2017's default
UNDERFLOW = 1e-6  # a gradient norm below this: the loss is flat around the point (a saturated softmax)
NOISE_STREAM = "sign-noise"  # the `seeding` stream the noise signs are drawn from


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS) -> float:
    """ECE = Σ_b (n_b / N)·|acc_b − conf_b| over `bins` equal-width confidence bins of [0, 1].

    `confidence` float (N,) in [0, 1], `correct` bool (N,). Bin b holds (b/B, (b+1)/B], the first bin
    [0, 1/B]: index = clamp(⌈conf·B⌉ − 1, 0, B − 1), computed in `confidence`'s dtype. Returns a value
    in [0, 1].
    """
    _check_int("bins", bins, 1)
    if not isinstance(confidence, torch.Tensor) or not confidence.is_floating_point() or confidence.ndim != 1:
        raise TypeError("confidence must be a 1-D floating-point tensor")
    if not isinstance(correct, torch.Tensor) or correct.dtype != torch.bool or correct.shape != confidence.shape:
        raise TypeError("correct must be a bool tensor of the same shape as confidence")
    if len(confidence) == 0:
        raise ValueError("the ECE needs at least one example")
    if not ((confidence >= 0) & (confidence <= 1)).all():  # also catches NaN
        raise ValueError("confidence must lie in [0, 1]")
    index = ((confidence * bins).ceil().long() - 1).clamp(0, bins - 1)
    # n_b·|acc_b − conf_b| = |Σ_{i∈b} (correct_i − conf_i)|: one scatter, no loop over the bins.
    gaps = torch.zeros(bins, dtype=torch.float64, device=confidence.device)
    gaps.index_add_(0, index, correct.double() - confidence.double())
    return (gaps.abs().sum() / len(confidence)).item()


def logit_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z_y − max_{k≠y} z_k per example, shape (N,): > 0 correctly classified, < 0 misclassified, 0 a tie.

    `logits` float (N, K) with K ≥ 2, `labels` int64 (N,) in [0, K).
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.ndim != 2:
        raise TypeError("logits must be a 2-D floating-point tensor (N, K)")
    if logits.shape[1] < 2:
        raise ValueError(f"margins need at least 2 classes, got {logits.shape[1]}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != logits.shape[:1]:
        raise TypeError("labels must be an int64 tensor of shape (N,) matching logits")
    if len(labels) and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]})")
    true = logits.gather(1, labels[:, None])[:, 0]
    other = logits.scatter(1, labels[:, None], -math.inf).amax(1)
    return true - other


def random_signs(shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """i.i.d. uniform signs in {−1, +1}, int8 of `shape` (one byte a pixel), drawn from a CPU `generator`."""
    return torch.randint(0, 2, tuple(shape), generator=generator, dtype=torch.int8) * 2 - 1


def sign_noise(images: torch.Tensor, eps: float, signs: torch.Tensor) -> torch.Tensor:
    """clamp(images + ε·signs, 0, 1): every pixel moves by exactly ε unless clipped at 0 or 1.

    `images` float (N, ...) in [0, 1], `signs` in {−1, +1} of the same shape (any device; moved to
    `images`'). A new tensor: `images` is not changed.
    """
    return (images + eps * signs.to(device=images.device, dtype=images.dtype)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Diagnostics:
    """Per-example diagnostics of one model on N test points (CPU tensors), and their summary."""

    correct: torch.Tensor  # (N,) bool: clean top-1 correct
    confidence: torch.Tensor  # (N,) float in [0, 1]: softmax probability of the top-1 class
    margin: torch.Tensor  # (N,) float: logit_margins of the clean logits
    grad_norm: torch.Tensor  # (N,) float ≥ 0: ‖∇ₓ CE(f(x), y)‖₂ over C·H·W, each example's own loss
    eps: tuple[float, ...]  # the noise levels, pixel units
    noise_correct: torch.Tensor  # (len(eps), N) bool: top-1 correct under sign noise of each ε

    def __post_init__(self) -> None:
        n = self.correct.shape
        if len(self.correct) == 0 or any(t.shape != n for t in (self.confidence, self.margin, self.grad_norm)):
            raise ValueError("correct, confidence, margin and grad_norm must share one shape (N,), N ≥ 1")
        if self.noise_correct.shape != (len(self.eps), *n):
            raise ValueError(f"noise_correct must have shape {(len(self.eps), *n)}, got {self.noise_correct.shape}")
        if len({f"{e:g}" for e in self.eps}) != len(self.eps):
            raise ValueError(f"eps values must be distinct (to 6 significant digits), got {self.eps}")

    @property
    def clean_accuracy(self) -> float:
        return self.correct.double().mean().item()

    def ece(self, bins: int = ECE_BINS) -> float:
        return expected_calibration_error(self.confidence, self.correct, bins)

    @property
    def median_margin(self) -> float:
        return torch.quantile(self.margin.double(), 0.5).item()

    def grad_norm_quantile(self, q: float) -> float:
        """The q-quantile of the gradient norms (linear interpolation, numpy's default), q in [0, 1]."""
        if not 0 <= q <= 1:
            raise ValueError(f"q must lie in [0, 1], got {q!r}")
        return torch.quantile(self.grad_norm.double(), q).item()

    def underflow_fraction(self, threshold: float = UNDERFLOW) -> float:
        """Share of examples whose gradient norm is below `threshold`, in [0, 1]."""
        return (self.grad_norm < threshold).double().mean().item()

    @property
    def zero_fraction(self) -> float:
        """Share of examples whose input gradient is exactly 0 (no sign to follow), in [0, 1]."""
        return (self.grad_norm == 0).double().mean().item()

    @property
    def noise_accuracy(self) -> tuple[float, ...]:
        return tuple(self.noise_correct.double().mean(1).tolist())

    def summary(self) -> dict[str, float]:
        """One row of the table: clean_acc, ece, median_margin, grad_norm_median, grad_norm_p90,
        grad_underflow, grad_zero, then noise_acc@ε (ε formatted with :g) per ε, in that order."""
        row = {
            "clean_acc": self.clean_accuracy,
            "ece": self.ece(),
            "median_margin": self.median_margin,
            "grad_norm_median": self.grad_norm_quantile(0.5),
            "grad_norm_p90": self.grad_norm_quantile(0.9),
            "grad_underflow": self.underflow_fraction(),
            "grad_zero": self.zero_fraction,
        }
        return row | {f"noise_acc@{e:g}": acc for e, acc in zip(self.eps, self.noise_accuracy, strict=True)}


def _check(images: torch.Tensor, labels: torch.Tensor, eps: Sequence[float], seed: int, batch_size: int | None) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.float32 or images.ndim < 2:
        raise TypeError("images must be a float32 tensor (N, C, H, W) in [0, 1]")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        raise TypeError("labels must be an int64 tensor of shape (N,) matching images")
    if len(labels) == 0:
        raise ValueError("diagnostics need at least one example")
    if not ((images >= 0) & (images <= 1)).all():
        raise ValueError("images must lie in [0, 1] (pixel space)")
    if isinstance(eps, (str, bytes)) or not isinstance(eps, Sequence):
        raise TypeError(f"eps must be a sequence of ε values in pixel units, got {type(eps).__name__}")
    for e in eps:
        if isinstance(e, bool) or not isinstance(e, (int, float)):
            raise TypeError(f"each ε must be a number, got {type(e).__name__} {e!r}")
        if not math.isfinite(e) or e < 0:
            raise ValueError(f"each ε must be a finite number ≥ 0 (pixel units), got {e!r}")
    if len({f"{e:g}" for e in eps}) != len(eps):
        raise ValueError(f"eps values must be distinct (to 6 significant digits), got {tuple(eps)}")
    _check_int("seed", seed, 0)
    if batch_size is not None:
        _check_int("batch_size", batch_size, 1)


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be ≥ {low}, got {value}")


def test_point_diagnostics(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: Sequence[float],
    seed: int,
    batch_size: int | None = None,
) -> Diagnostics:
    """Diagnostics of `model` on (images float32 (N, C, H, W) in [0, 1], labels int64 (N,)).

    Per chunk of `batch_size` examples (default: `interpolation.MAX_POINTS` points per forward, shared by the
    clean pass and the noisy copies): one forward+backward for the logits and input gradients, one
    forward for the noisy copies of every ε > 0. The signs are ONE draw of (N, C, H, W) from
    `seeding.generator(seed, NOISE_STREAM)` on the CPU, shared by every ε: each example is pushed along
    one random direction at growing ε (common random numbers, so the accuracy curve over ε is not
    blurred by redrawing), and the result for an ε does not depend on the other ε, the chunks or the
    device. ε = 0 reuses the clean correctness (x + 0 = x; not re-run, so it is exact on any device).
    """
    _check(images, labels, eps, seed, batch_size)
    eps = tuple(float(e) for e in eps)
    device = model_device(model, images.device)
    noisy = [e for e in eps if e > 0]
    zero = torch.tensor([e == 0 for e in eps], dtype=torch.bool, device=device)
    chunk = batch_size or max(1, MAX_POINTS.get(device.type, 128) // (1 + len(noisy)))
    signs = random_signs(images.shape, seeding.generator(seed, NOISE_STREAM))  # N·C·H·W bytes, on the CPU
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("correct", "confidence", "margin", "grad_norm", "noise")}
    with frozen(model):
        for s in range(0, len(labels), chunk):
            x, y = images[s : s + chunk].to(device), labels[s : s + chunk].to(device)
            grad, logits = input_gradient(model, x, y)  # the gradient of each example's own CE (summed)
            confidence, pred = logits.float().softmax(1).max(1)
            hit = torch.empty(len(eps), len(y), dtype=torch.bool, device=device)
            hit[zero] = pred == y
            if noisy:
                with torch.no_grad():
                    batch = torch.cat([sign_noise(x, e, signs[s : s + chunk]) for e in noisy])  # ε-major
                    hit[~zero] = model(batch).argmax(1).view(len(noisy), -1) == y
            for key, value in (("correct", pred == y), ("confidence", confidence), ("noise", hit),
                               ("margin", logit_margins(logits.float(), y)),
                               ("grad_norm", grad.flatten(1).norm(dim=1))):  # fmt: skip
                rows[key].append(value.cpu())
    out = {k: torch.cat(v, dim=-1) for k, v in rows.items()}
    return Diagnostics(correct=out["correct"], confidence=out["confidence"], margin=out["margin"],
                       grad_norm=out["grad_norm"], eps=eps, noise_correct=out["noise"])  # fmt: skip


test_point_diagnostics.__test__ = False  # type: ignore[attr-defined]  # pytest: a function, not a test
