"""Indicators of attack failure: is a robust accuracy real, or did the attack fail?

After Carlini et al. (2019), "On Evaluating Adversarial Robustness", Pintor et al. (2022), "Indicators of
Attack Failure", and AutoAttack's checks. `measure` runs on every white-box evaluation, per model and
ε, and reads what the attack loop recorded on its way (`descent.Trace`) plus a few cheap probes of
its own; `ordering_flags` compares stored evaluations (ε = 0 against clean, ε against ε, strong
against weak attacks, white against black box).

No indicator fires on sampling noise. Where a check compares two accuracies measured on the same
examples it tests the examples that changed (exact McNemar) at a family-wise level of 5% (Bonferroni
over the comparisons made together); a difference that is not significant is reported as "within
noise", never as a failure. Where a check is a count of something that must not happen at all
(gradients that are zero, points met but not returned) it fires above a stated share of examples.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from robustbench_mixup.attacks.descent import Trace
from robustbench_mixup.attacks.methods import Attack
from robustbench_mixup.measures.gradients import attack_loss
from robustbench_mixup.measures.stats import mcnemar_p
from robustbench_mixup.settings.config import ATTACKS

ALPHA = 0.05  # family-wise level of the paired tests made together
SUBSET = 256  # examples the probes that need extra forwards use (the first batch of the evaluation)
UNCONSTRAINED_N = 200  # examples attacked at ε = 1
DOUBLING_N = 500  # examples attacked again with twice the steps
NOISE_DRAWS = 5  # random sign-noise draws per example
GRADIENT_SHARE = 0.01  # unusable gradients: fires at ≥ 1% of examples
SILENT_SHARE = 0.005  # points met but not returned: fires when they hide ≥ 0.5 points of accuracy
INCOMPLETE_SHARE, LATE_GAIN, MIN_SURVIVORS = 0.1, 0.1, 20  # see incomplete_share
UNSTABLE_CHANGE, UNSTABLE_SHARE = 0.5, 0.05  # relative loss change; share of examples
UNCONSTRAINED_SHARE = 0.01  # survivors allowed at ε = 1
DOUBLING_DROP = 0.01  # accuracy change (points/100) that, when significant, says "not converged"


@dataclass(frozen=True)
class IndicatorInfo:
    label: str
    meaning: str  # what it measures
    advice: str  # what to do when it fires
    fires: str = "≥"  # how the value is compared with the threshold: "≥", ">" or "|Δ| >"
    difference: bool = False  # an accuracy difference (in points, tested for significance), not a share


INDICATORS: dict[str, IndicatorInfo] = {
    "gradients": IndicatorInfo(
        "unusable gradients",
        "share of examples whose input gradient at the attack's first point is exactly zero, NaN or infinite: "
        "a gradient attack cannot move them",
        "the robust accuracy overstates robustness: use APGD-DLR (its loss does not saturate) and a transfer "
        "attack; look for non-differentiable layers, a softmax output or saturated logits",
    ),
    "randomness": IndicatorInfo(
        "randomness",
        "share of examples whose logits differ between two forward passes of the same input: the model is stochastic",
        "attack the expectation over the randomness (EOT) and evaluate with several passes; single-pass numbers "
        "are not robust accuracies",
        fires=">",
    ),
    "unstable": IndicatorInfo(
        "unstable predictions",
        f"share of returned points whose loss changes by more than {UNSTABLE_CHANGE:.0%} under small uniform noise "
        "(a tenth of ε): the loss surface is rugged and its gradient misleads",
        "smooth the loss surface for the attack (EOT over noise, BPDA for non-differentiable steps) before "
        "trusting the number",
    ),
    "silent": IndicatorInfo(
        "silent success",
        "share of examples misclassified at some point of the attack's path but correct at the point it returned",
        "the attack found adversarial points and threw them away: count them (APGD keeps the best point), "
        "or report the accuracy as at most this much lower",
    ),
    "incomplete": IndicatorInfo(
        "incomplete optimization",
        "share of the surviving examples whose best loss still rose by more than a tenth of its whole gain in the "
        "last 10% of the steps: a loss still rising means the attack stopped early",
        "run more steps (or APGD, whose step size adapts) until the loss levels off",
    ),
    "unconstrained": IndicatorInfo(
        "unconstrained attack failure",
        f"accuracy at ε = 1, where any image can be reached, on the first {UNCONSTRAINED_N} examples: must be ~0",
        "the attack is broken for this model (masked gradients, too few steps): do not trust any ε",
        fires=">",
    ),
    "noise": IndicatorInfo(
        "weaker than random noise",
        f"accuracy under the attack minus accuracy under random sign noise of the same ε ({NOISE_DRAWS} draws per "
        "example), on the same examples: an attack must do at least as well as noise",
        "the gradient points the wrong way for this model: the accuracy overstates robustness",
        fires=">",
        difference=True,
    ),
    "doubling": IndicatorInfo(
        "not converged",
        f"accuracy change when the steps are doubled, at the ε nearest 50% accuracy, on the first {DOUBLING_N} "
        "examples",
        "the attack had not converged: raise --steps (or --restarts) until doubling changes nothing",
        fires="|Δ| >",
        difference=True,
    ),
}


@dataclass
class Indicator:
    """One indicator of one (model, attack, ε)."""

    name: str
    model: str
    eps: float
    value: float  # what INDICATORS[name].meaning says, as a fraction (accuracy differences in [-1, 1])
    threshold: float
    status: str  # "ok", "noise" (a difference within sampling noise) or "fired"
    detail: str
    p_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _paired(worse: Any, better: Any) -> tuple[int, int]:
    """(n01, n10): examples only `better` gets right, and only `worse` gets right (bool tensors or arrays)."""
    return int((~worse & better).sum()), int((worse & ~better).sum())


def _significant(rise: float, n01: int, n10: int, alpha: float) -> tuple[str, float]:
    p = mcnemar_p(n01, n10)
    if rise <= 0:
        return "ok", p
    return ("fired" if p < alpha else "noise"), p


# --- per evaluation -------------------------------------------------------------------------------


def gradient_share(trace: Trace) -> float:
    return float((trace.grad_zero | trace.grad_nonfinite).float().mean()) if len(trace.grad_zero) else 0.0


def silent_share(trace: Trace, correct: torch.Tensor) -> float:
    return float((trace.fooled_on_path.cpu() & correct).float().mean()) if len(correct) else 0.0


def incomplete_share(trace: Trace, correct: torch.Tensor) -> float | None:
    """Share of the surviving examples whose best loss still rose by more than LATE_GAIN of its whole gain
    in the last 10% of the steps (a trend, not the creep of a fixed-step attack oscillating at the top);
    None when there is nothing to judge (fewer than MIN_SURVIVORS survivors, fewer than 3 points)."""
    losses = trace.losses.cpu()
    if len(losses) < 3 or int(correct.sum()) < MIN_SURVIVORS:
        return None
    best = losses[:, correct].cummax(0).values
    late = math.floor(0.9 * (len(best) - 1))
    gain, late_gain = best[-1] - best[0], best[-1] - best[late]
    rising = torch.isfinite(gain) & (gain > 0) & (late_gain > LATE_GAIN * gain)
    return float(rising.float().mean())


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).float()


def randomness_share(model: nn.Module, x: torch.Tensor) -> float:
    """Share of examples whose logits differ between two passes (beyond float noise)."""
    a, b = _forward(model, x), _forward(model, x)
    tolerance = 1e-4 * (1 + a.abs().amax(1))
    return float(((a - b).abs().amax(1) > tolerance).float().mean())


def unstable_share(model: nn.Module, adv: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator,
                   *, draws: int = 4, bounds: tuple[float, float] = (0.0, 1.0)) -> float:  # fmt: skip
    """Share of points whose loss changes by more than UNSTABLE_CHANGE (relative) under uniform noise of
    radius ε/10, in any of `draws` draws."""
    base = attack_loss(_forward(model, adv), y)
    worst = torch.zeros_like(base)
    for _ in range(draws):
        u = (torch.rand(adv.shape, generator=generator) * 2 - 1).to(adv.device, adv.dtype)
        moved = attack_loss(_forward(model, (adv + 0.1 * eps * u).clamp(*bounds)), y)
        worst = torch.maximum(worst, (moved - base).abs() / base.abs().clamp_min(0.05))
    return float((worst > UNSTABLE_CHANGE).float().mean())


def noise_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator,
                  *, batch_size: int = 256, bounds: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:  # fmt: skip
    """Per example: still correct under every one of NOISE_DRAWS random sign-noise perturbations of size ε."""
    out = []
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        ok = torch.ones(len(yb), dtype=torch.bool, device=yb.device)
        for _ in range(NOISE_DRAWS):
            s = torch.randint(0, 2, xb.shape, generator=generator).to(xb.device, xb.dtype) * 2 - 1
            ok &= _forward(model, (xb + eps * s).clamp(*bounds)).argmax(1) == yb
        out.append(ok.cpu())
    return torch.cat(out)


def _correct_after(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    adv = attack(model, x, y, eps)
    return (_forward(model, adv).argmax(1) == y).cpu()


def measure(
    model_name: str,
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float],
    correct: Sequence[torch.Tensor],
    traces: Sequence[Trace | None],
    first: Sequence[torch.Tensor | None],
    *,
    seed: int = 0,
) -> list[Indicator]:
    """Every indicator of one white-box evaluation of `model` by `attack` at each ε > 0.

    `correct[i]` and `traces[i]` are the evaluation's per-example outcomes and trace at `eps[i]`;
    `first[i]` its adversarial points on the first examples (for the noise probe), if kept.
    """
    g = torch.Generator().manual_seed((seed * 1_000_003 + 17) % 2**63)  # ints only: the same in every process
    info = ATTACKS[attack.name]
    out: list[Indicator] = []
    todo = [i for i, e in enumerate(eps) if e > 0]
    if not todo:
        return out
    sub = slice(0, min(SUBSET, len(y)))
    # Doubling the budget is the gradient attacks' convergence test; a search of 5,000 queries doubled would cost
    # more than everything else, and its budget is AutoAttack's standard one.
    doubling = info.iterative and info.gradient
    tests = len(todo) + (1 if doubling else 0)  # the noise tests, and the doubling test
    alpha = ALPHA / tests
    random = randomness_share(model, x[sub])
    for i in todo:
        e, ok, trace = float(eps[i]), correct[i].cpu(), traces[i]

        def add(name: str, value: float, threshold: float, status: str, detail: str, p: float | None = None,
                e: float = e) -> None:  # fmt: skip
            out.append(Indicator(name, model_name, e, value, threshold, status, detail, p))

        add("randomness", random, 0.0, "fired" if random > 0 else "ok",
            f"{random:.1%} of {len(y[sub])} examples give different logits on a second pass")  # fmt: skip
        if trace is not None:
            share = gradient_share(trace)
            add("gradients", share, GRADIENT_SHARE, "fired" if share >= GRADIENT_SHARE else "ok",
                f"{share:.1%} of examples have a zero or non-finite input gradient")  # fmt: skip
            silent = silent_share(trace, ok)
            add("silent", silent, SILENT_SHARE, "fired" if silent >= SILENT_SHARE else "ok",
                f"{silent:.1%} of examples were misclassified on the attack's path but not at its result")  # fmt: skip
            if info.strong:
                late = incomplete_share(trace, ok)
                if late is not None:
                    detail = f"{late:.1%} of the survivors still gained in the last 10% of the {attack.steps} steps"
                    add("incomplete", late, INCOMPLETE_SHARE, "fired" if late >= INCOMPLETE_SHARE else "ok", detail)
        if first[i] is not None:
            m = len(first[i])
            share = unstable_share(model, first[i].to(x.device), y[:m], e, g)
            add(
                "unstable",
                share,
                UNSTABLE_SHARE,
                "fired" if share >= UNSTABLE_SHARE else "ok",
                f"{share:.1%} of {m} points change their loss by > {UNSTABLE_CHANGE:.0%} under noise of ε/10",
            )
        noisy = noise_correct(model, x, y, e, g)
        n01, n10 = _paired(noisy, ok)  # n01: the attack fails where noise succeeds
        rise = (n01 - n10) / len(y)
        status, p = _significant(rise, n01, n10, alpha)
        add("noise", rise, 0.0, status,
            f"accuracy {ok.float().mean():.1%} under the attack, {noisy.float().mean():.1%} under random sign noise "
            f"({n01} examples survive the attack but not noise, {n10} the reverse)", p)  # fmt: skip
    if info.iterative:
        m = min(UNCONSTRAINED_N, len(y))
        left = float(_correct_after(model, attack, x[:m], y[:m], 1.0).float().mean())
        out.append(Indicator("unconstrained", model_name, 1.0, left, UNCONSTRAINED_SHARE,
                             "fired" if left > UNCONSTRAINED_SHARE else "ok",
                             f"accuracy {left:.1%} on {m} examples at ε = 1"))  # fmt: skip
    if doubling:
        accuracy = {i: float(correct[i].float().mean()) for i in todo}
        i = min(todo, key=lambda j: abs(accuracy[j] - 0.5))
        m = min(DOUBLING_N, len(y))
        doubled = dataclasses.replace(attack, steps=2 * attack.steps)  # type: ignore[type-var]
        again = _correct_after(model, doubled, x[:m], y[:m], float(eps[i]))
        before = correct[i].cpu()[:m]
        n01, n10 = _paired(again, before)  # n01: survived the attack, broken with doubled steps
        drop = (n01 - n10) / m
        p = mcnemar_p(n01, n10)
        status = "ok" if abs(drop) <= DOUBLING_DROP else ("fired" if p < alpha else "noise")
        out.append(Indicator("doubling", model_name, float(eps[i]), drop, DOUBLING_DROP, status,
                             f"accuracy {before.float().mean():.1%} with {attack.steps} steps, "
                             f"{again.float().mean():.1%} with {2 * attack.steps}, on {m} examples", p))  # fmt: skip
    return out


# --- across stored evaluations ------------------------------------------------------------------------


def order_of(attack: str) -> int:
    """Weak-to-strong rank: FGSM 0, I-FGSM 1, the strong attacks 2."""
    return 2 if ATTACKS[attack].strong else int(ATTACKS[attack].iterative)


@dataclass
class Comparison:
    """One ordering comparison: the accuracy of row `upper` must be at least that of row `lower`."""

    check: str
    upper: Mapping[str, Any]
    lower: Mapping[str, Any]
    detail: str


def ordering_flags(rows: Sequence[Mapping[str, Any]], clean: Mapping[str, float]) -> list[dict[str, Any]]:
    """Violations of what must hold between evaluations of the same examples, each with a status:
    "failed" when significant, "noise" when within sampling noise (or exact checks: always "failed").

    `rows` are stored `attack_results` rows (with `correct`, per-example outcomes, or None) of one run and
    n; `clean` the clean accuracy of each model. Checks: ε = 0 reproduces the clean accuracy exactly;
    accuracy does not rise with ε (per model, attack setting, mode and source); the strong attacks are no
    weaker than I-FGSM, I-FGSM no weaker than FGSM (white box, same ε); black box is no stronger than
    white box (same attack and ε).
    """
    flags: list[dict[str, Any]] = []
    comparisons: list[Comparison] = []
    for r in rows:
        if r["eps"] == 0 and r["top1"] != clean.get(r["model"], r["top1"]):
            flags.append(
                _flag(
                    "eps0_equals_clean",
                    r,
                    "failed",
                    None,
                    f"accuracy at ε=0 is {r['top1']:.4f} but clean accuracy is {clean[r['model']]:.4f}",
                )
            )

    def curve_key(r: Mapping[str, Any]) -> tuple:
        """One ε curve: the same attack with the same settings; the step size by its rule (None: the
        attack's own rule, which scales with ε) or its fixed value."""
        default = _default_size(r["attack"], r["steps"], r["eps"])
        size = None if default is None or math.isclose(r["step_size"], default, rel_tol=1e-6) else r["step_size"]
        return (r["model"], r["attack"], r["mode"], r["source"], r["backend"], r["steps"], r.get("restarts", 1),
                r.get("precision", "fp32"), r.get("seed", 0), size)  # fmt: skip

    for _, group in itertools.groupby(sorted(rows, key=lambda r: (repr(curve_key(r)), r["eps"])), key=curve_key):
        for lo, hi in itertools.pairwise(list(group)):
            if lo["eps"] == hi["eps"]:
                continue
            comparisons.append(
                Comparison(
                    "monotone_in_eps",
                    lo,
                    hi,
                    f"accuracy rises from {lo['top1']:.4f} at ε={lo['eps']:g} to {hi['top1']:.4f}",
                )
            )
    white = [r for r in rows if r["mode"] == "white"]
    flags += masking_flags(white)
    white = [r for r in white if ATTACKS[r["attack"]].gradient]  # the order holds between gradient attacks
    for a, b in itertools.permutations(white, 2):
        if (a["model"], a["eps"]) == (b["model"], b["eps"]) and order_of(a["attack"]) < order_of(b["attack"]):
            weak, strong = ATTACKS[a["attack"]].label, ATTACKS[b["attack"]].label
            comparisons.append(
                Comparison(
                    f"{b['attack']}_le_{a['attack']}",
                    a,
                    b,
                    f"white-box {strong} accuracy {b['top1']:.4f} exceeds {weak}'s {a['top1']:.4f}",
                )
            )
    for b in rows:
        if b["mode"] != "black":
            continue
        for w in white:
            if (w["model"], w["attack"], w["eps"], w["steps"], w["backend"]) == (
                b["model"],
                b["attack"],
                b["eps"],
                b["steps"],
                b["backend"],
            ):
                comparisons.append(
                    Comparison(
                        "black_ge_white", b, w, f"black-box accuracy {b['top1']:.4f} is below white-box {w['top1']:.4f}"
                    )
                )
    rises = [c for c in comparisons if c.lower["top1"] > c.upper["top1"]]
    alpha = ALPHA / max(len(comparisons), 1)
    for c in rises:
        n01, n10 = _discordant(c.upper, c.lower)
        p = mcnemar_p(n01, n10)
        flags.append(_flag(c.check, c.lower, "failed" if p < alpha else "noise", p, c.detail))
    return flags


def masking_flags(white: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """AutoAttack's check that the gradient attacks were not masked: per model and ε, the examples that every
    gradient attack left correct and a gradient-free one (Square) breaks. One flag per such row; "failed" when
    the count is significant (exact McNemar against none, Bonferroni over the rows tested), else "noise"."""
    tests = []
    for r in white:
        if ATTACKS[r["attack"]].gradient or r.get("correct") is None or r["eps"] == 0:
            continue
        grads = [g for g in white if (g["model"], g["eps"]) == (r["model"], r["eps"])
                 and ATTACKS[g["attack"]].gradient and g.get("correct") is not None
                 and tuple(g["correct"].shape) == tuple(r["correct"].shape)]  # fmt: skip
        if grads:
            survive = np.logical_and.reduce([g["correct"] for g in grads])
            tests.append((r, grads, int((survive & ~r["correct"]).sum()), int(survive.sum())))
    flags = []
    for r, grads, extra, left in tests:
        if extra == 0:
            continue
        p = mcnemar_p(extra, 0)
        names = ", ".join(sorted({ATTACKS[g["attack"]].label for g in grads}))
        detail = (f"{ATTACKS[r['attack']].label} breaks {extra} of the {left} examples that every gradient attack "
                  f"({names}) left correct at ε={r['eps']:g}: the gradient attacks were masked for this model, and "
                  "its gradient-attack accuracy overstates its robustness")  # fmt: skip
        flags.append(_flag("gradient_free_breaks_more", r, "failed" if p < ALPHA / len(tests) else "noise", p, detail))
    return flags


def _discordant(upper: Mapping[str, Any], lower: Mapping[str, Any]) -> tuple[int, int]:
    """(examples only `lower` gets right, examples only `upper` gets right); from the stored outcomes,
    or, for rows stored without them, the least discordance their counts allow (the most alarming)."""
    a, b = upper.get("correct"), lower.get("correct")
    if a is not None and b is not None and tuple(a.shape) == tuple(b.shape):  # numpy arrays, as stored
        return _paired(a, b)
    n = upper["n"]
    rise = round(lower["top1"] * n) - round(upper["top1"] * n)
    return max(rise, 0), max(-rise, 0)


def _default_size(attack: str, steps: int, eps: float) -> float | None:
    """The step size `attack` uses at `eps` by its own rule (None for a name this version does not know)."""
    from robustbench_mixup.attacks.methods import make_attack

    if attack not in ATTACKS or eps == 0:
        return None
    return make_attack(attack, steps=steps if ATTACKS[attack].iterative else None).size_for(eps)


def _flag(check: str, row: Mapping[str, Any], status: str, p: float | None, detail: str) -> dict[str, Any]:
    return {"check": check, "model": row["model"], "mode": row["mode"], "eps": row["eps"], "attack": row["attack"],
            "backend": row.get("backend", "native"), "status": status, "p_value": p, "detail": detail}  # fmt: skip
