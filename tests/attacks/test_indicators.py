"""The attack-failure indicators: each fires on a model built to trip it, none on a plain trained model,
and none on sampling noise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mixup.attacks import indicators
from robustbench_mixup.attacks.descent import Trace
from robustbench_mixup.attacks.methods import FGSM, PGD
from robustbench_mixup.measures.stats import mcnemar_p, paired_difference
from robustbench_mixup.settings.config import AttackConfig
from robustbench_mixup.stages.attack import evaluate_models

D = 16  # pixels of the synthetic images


def _data(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class (of 3) is which third of [0.25, 0.75] their mean pixel falls in."""
    g = torch.Generator().manual_seed(seed)
    level = 0.25 + 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    x = (level + 0.05 * (2 * torch.rand(n, 1, 4, 4, generator=g) - 1)).clamp(0, 1)
    y = ((x.flatten(1).mean(1) - 0.25) / (0.5 / 3)).long().clamp(0, 2)
    return x, y


class Mean(nn.Module):
    """A linear 3-class model of the mean pixel, right on `_data` (margins of a few tenths)."""

    def __init__(self, scale: float = 30.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([-1.0, 0.0, 1.0]) * scale)
        self.b = nn.Parameter(torch.tensor([0.4167 * scale, 0.0, -0.5833 * scale]))  # boundaries at 5/12, 7/12

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).mean(1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) * self.w + self.b


class Quantized(Mean):
    """Rounds its input to 1/8 first: the input gradient is zero everywhere."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return super().features(torch.round(x * 8) / 8)


class Rugged(Mean):
    """A high-frequency ripple on the logits: the loss changes a lot under tiny noise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 3 * torch.sin(2000 * x.flatten(1)).sum(1, keepdim=True) * torch.tensor([1.0, -1, 0])


class Stochastic(Mean):
    """Dropout on its input in eval mode too: two passes differ."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.dropout(x, 0.5, training=True))


class SoftmaxOutput(Mean):
    """Returns probabilities, not logits, from a very confident model: the gradient underflows to 0."""

    def __init__(self) -> None:
        super().__init__(scale=3000.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).softmax(1)


def _fired(model: nn.Module, cfg: AttackConfig, n: int = 400) -> dict[str, set[str]]:
    x, y = _data(n)
    found: list[indicators.Indicator] = []
    evaluate_models({"m": model.eval()}, x, y, cfg.validate(), indicators=found)
    return {s: {i.name for i in found if i.status == s} for s in ("fired", "noise", "ok")}


def test_the_plain_model_fires_nothing():
    for cfg in (
        AttackConfig("fgsm", (0.02, 0.05), mode="white"),
        AttackConfig("pgd", (0.02, 0.05), steps=20, mode="white"),
    ):
        status = _fired(Mean(), cfg)
        assert status["fired"] == set(), status


def test_a_quantizing_model_trips_gradients_noise_and_unconstrained():
    status = _fired(Quantized(), AttackConfig("pgd", (0.05, 0.1), steps=10, mode="white"))
    assert {"gradients", "unconstrained"} <= status["fired"]
    fgsm = _fired(Quantized(), AttackConfig("fgsm", (0.05, 0.1), mode="white"))
    assert {"gradients", "noise"} <= fgsm["fired"]  # FGSM does not move; random noise of ε does


def test_a_rugged_model_trips_unstable_predictions():
    assert "unstable" in _fired(Rugged(), AttackConfig("pgd", (0.05,), steps=10, mode="white"))["fired"]


def test_a_stochastic_model_trips_randomness():
    assert "randomness" in _fired(Stochastic(), AttackConfig("fgsm", (0.05,), mode="white"))["fired"]


def test_a_softmax_output_model_trips_unusable_gradients():
    assert "gradients" in _fired(SoftmaxOutput(), AttackConfig("fgsm", (0.05,), mode="white"))["fired"]


def test_an_attack_capped_at_too_few_steps_trips_incomplete_and_doubling():
    capped = AttackConfig("pgd", (0.1,), steps=4, step_size=0.004, mode="white")  # 0.016 of ε = 0.1 reachable
    status = _fired(Mean(), capped)
    assert {"incomplete", "doubling"} <= status["fired"]


def test_silent_success_counts_points_met_but_not_returned():
    trace = Trace(torch.zeros(3, 4), torch.tensor([True, True, False, False]), torch.zeros(4, dtype=torch.bool),
                  torch.zeros(4, dtype=torch.bool))  # fmt: skip
    correct = torch.tensor([True, False, True, False])  # example 0 was fooled on the way, returned correct
    assert indicators.silent_share(trace, correct) == 0.25


def test_incomplete_share_counts_survivors_whose_loss_still_rises():
    n = indicators.MIN_SURVIVORS
    steps = torch.arange(11.0)[:, None]
    linear = steps.repeat(1, n)  # rising steadily: 10% of the gain in the last 10% of the steps
    creeping = torch.cat([steps[:6].repeat(1, n), (5 + 0.01 * steps[6:]).repeat(1, n)])  # levelled off, creeping
    none = torch.zeros(2 * n, dtype=torch.bool)

    def share(losses: torch.Tensor, correct: torch.Tensor) -> float | None:
        return indicators.incomplete_share(Trace(losses, none[: losses.shape[1]], none[: losses.shape[1]],
                                                 none[: losses.shape[1]]), correct)  # fmt: skip

    accelerating = steps.pow(2).repeat(1, n)  # 19% of the gain in the last step
    assert share(torch.cat([accelerating, creeping], 1), torch.ones(2 * n, dtype=torch.bool)) == 0.5
    assert share(linear, torch.ones(n, dtype=torch.bool)) == 0.0  # exactly 10%: not more
    assert share(creeping, torch.ones(n, dtype=torch.bool)) == 0.0
    few = torch.zeros(n, dtype=torch.bool)
    few[: n - 1] = True
    assert share(accelerating, few) is None  # too few survivors to judge


def test_mcnemar_and_the_paired_interval_known_values():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(6, 0) == pytest.approx(2 / 64)  # all six discordant examples one way
    assert mcnemar_p(1, 0) == 1.0  # one example in a thousand is never significant
    a = torch.zeros(1000, dtype=torch.bool)
    b = a.clone()
    b[:1] = True
    d = paired_difference(a, b)
    assert (d.n01, d.n10, d.diff, d.p_value) == (1, 0, 0.001, 1.0) and d.lo < 0 < d.hi


def test_a_rise_of_one_example_in_a_thousand_is_within_noise():
    """The quick preset's old false alarm: black-box accuracy 'rising' from 96.5% to 96.6% with ε."""
    g = torch.Generator().manual_seed(0)
    at0 = torch.rand(1000, generator=g) < 0.965
    at1 = at0.clone()
    at1[(~at0).nonzero()[0]] = True  # one more example right
    row = {"model": "mixup", "mode": "black", "attack": "fgsm", "source": "surrogate", "backend": "native",
           "steps": 1, "restarts": 1, "n": 1000}  # fmt: skip
    rows = [{**row, "eps": 0.0, "step_size": 0.0, "top1": float(at0.float().mean()), "correct": at0},
            {**row, "eps": 0.01, "step_size": 0.01, "top1": float(at1.float().mean()), "correct": at1}]  # fmt: skip
    flags = indicators.ordering_flags(rows, {"mixup": float(at0.float().mean())})
    assert [(f["check"], f["status"]) for f in flags] == [("monotone_in_eps", "noise")]
    many = at0.clone()
    many[(~at0).nonzero()[:20, 0]] = True  # twenty more right, none fewer: significant
    rows[1] = {**rows[1], "top1": float(many.float().mean()), "correct": many}
    flags = indicators.ordering_flags(rows, {"mixup": float(at0.float().mean())})
    assert [(f["check"], f["status"]) for f in flags] == [("monotone_in_eps", "failed")]


def test_fgsm_and_pgd_traces_cover_every_example():
    x, y = _data(50)
    for attack in (FGSM(), PGD(steps=3)):
        (crafted,) = [c for c in attack.craft_batch(Mean().eval(), x, y, [0.05], (0.0, 1.0))]
        assert crafted.trace is not None and crafted.trace.fooled_on_path.shape == (50,)


@pytest.mark.slow
def test_a_plain_trained_smallcnn_fires_nothing(trained_smallcnn):
    model, x, y = trained_smallcnn
    x, y = x[:300], y[:300]
    for cfg in (
        AttackConfig("fgsm", (0.05, 0.1), mode="white"),
        AttackConfig("pgd", (0.05, 0.1), steps=20, mode="white"),
    ):
        found: list[indicators.Indicator] = []
        evaluate_models({"m": model}, x, y, cfg.validate(), indicators=found)
        assert [(i.name, i.eps, i.detail) for i in found if i.status == "fired"] == []
        assert {i.name for i in found} >= {"gradients", "randomness", "silent", "unstable", "noise"}
