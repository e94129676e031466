"""The paper's claims as a table, and the rule that turns a measurement into a verdict on each.

Each claim compares mixup with ERM on one quantity, each measured with a 95% interval:

- a claim that mixup makes a quantity LOWER (or HIGHER) is *reproduced* when mixup's interval lies
  entirely on the claimed side of ERM's, *not reproduced* when it lies entirely on the other side, and
  *inconclusive* when the two intervals overlap;
- a claim that mixup is NO WORSE (clean accuracy) is *not reproduced* only when mixup's interval lies
  entirely on the worse side of ERM's, and *reproduced* otherwise.

Nothing is tuned to fit: the verdict follows from the numbers alone, and `RULE` states it in the report.

The claims are rows of `CLAIMS`, one `ClaimSpec` each: what is claimed, what the paper reports, which way
mixup should move the quantity, its unit, the stage that measures it, and a `select` function that picks the
two estimates out of a run's stored results (`RunResults`). Every selection rule is a small pure function
below. To add a claim, add one row to `CLAIMS` (with a new `key`), writing a new selection function only when
no existing one fits; `assess` and the reports pick it up unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, get_args

from . import paper
from .config import ATTACKS

Direction = Literal["lower", "higher", "no_worse_higher"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)
# The stages whose suggested command (`commands.stage_commands`) can fill a claim: every attack is one.
FILLED_BY: tuple[str, ...] = ("train", *ATTACKS, "probe", "sweep")

RULE = (
    "A claim that mixup lowers (raises) a quantity is reproduced when mixup's 95% interval lies entirely below "
    "(above) ERM's, not reproduced when it lies entirely on the other side, and inconclusive when the intervals "
    "overlap. A claim that mixup is no worse (clean accuracy) is not reproduced only when mixup's interval lies "
    "entirely below ERM's."
)

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not self.lo <= self.value <= self.hi:
            raise ValueError(f"an estimate must lie in its interval: {self.lo} ≤ {self.value} ≤ {self.hi}")


Selection = tuple[Estimate | None, Estimate | None, str]  # (ERM, mixup, where it was measured)


def verdict(erm: Estimate, mixup: Estimate, direction: Direction) -> str:
    """'reproduced', 'not reproduced' or 'inconclusive' for the claim that mixup moves the quantity `direction`."""
    below = mixup.hi < erm.lo  # mixup entirely below ERM
    above = mixup.lo > erm.hi  # mixup entirely above ERM
    if direction == "lower":
        return "reproduced" if below else "not reproduced" if above else "inconclusive"
    if direction == "higher":
        return "reproduced" if above else "not reproduced" if below else "inconclusive"
    if direction == "no_worse_higher":
        return "not reproduced" if below else "reproduced"
    raise ValueError(f"direction must be lower, higher or no_worse_higher, got {direction!r}")


@dataclass(frozen=True)
class RunResults:
    """A run's stored results, as `report.collect` reads them from the database (nothing is recomputed)."""

    final_test_acc: Mapping[str, float] = field(default_factory=dict)  # model -> last epoch's test accuracy
    n_test: int = 0
    attack_rows: Sequence[Row] = ()
    probe_rows: Sequence[Row] = ()
    sweep_jobs: Sequence[Row] = ()  # finished jobs of the run's sweep (empty when it is on another dataset)
    n_train: int | None = None


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of the paper: one row of `CLAIMS`."""

    key: str  # stable identifier
    claim: str
    paper: str  # the paper's figure, as text
    direction: Direction
    unit: str  # "%" (a proportion, shown ×100) or "" (shown as measured)
    stage: str  # the stage (one of FILLED_BY) whose command fills the claim when it is not measured
    select: Callable[[RunResults], Selection]

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.stage not in FILLED_BY:
            raise ValueError(f"stage must be one of {FILLED_BY}, got {self.stage!r}")


@dataclass
class Claim:
    claim: str
    paper: str  # the paper's figure, as text
    erm: Estimate | None
    mixup: Estimate | None
    where: str  # at which setting the measurement was taken
    verdict: str  # reproduced | not reproduced | inconclusive | not measured
    unit: str = "%"
    command: str = ""  # what fills a claim that is not measured
    key: str = ""  # the `ClaimSpec.key` it was assessed from


# --- selection rules: pure functions of stored rows ---------------------------------------------------------


def wilson_estimate(p: float, n: int) -> Estimate:
    """Proportion `p` of `n` trials with its 95% Wilson interval (widened, if rounding needs, to contain `p`)."""
    from .stats import wilson_interval

    lo, hi = wilson_interval(round(p * n), n)
    return Estimate(p, min(lo, p), max(hi, p))


def attack_error_estimate(row: Row) -> Estimate:
    """Top-1 error with its interval, from an attack_results row (accuracy interval flipped)."""
    return Estimate(1 - row["top1"], 1 - row["top1_hi"], 1 - row["top1_lo"])


def strongest_native_attack(rows: Sequence[Row], attack: str, mode: str) -> tuple[float, dict[str, Row]] | None:
    """The largest ε > 0 evaluated for (attack, mode) with the native backend, and its row per model.

    The paper reports one ε, so the strongest attack evaluated stands for it. Rows of other backends (the
    cross-checks) are ignored. None when there is no such row.
    """
    key = (attack, mode, "native")
    native = [r for r in rows if (r["attack"], r["mode"], r["backend"]) == key and r["eps"] > 0]
    if not native:
        return None
    eps = max(r["eps"] for r in native)
    return eps, {r["model"]: r for r in native if r["eps"] == eps}


def attack_error(results: RunResults, *, attack: str, mode: str) -> Selection:
    """ERM's and mixup's top-1 error under `attack` in `mode`, at the strongest native ε."""
    found = strongest_native_attack(results.attack_rows, attack, mode)
    if found is None or "erm" not in found[1] or "mixup" not in found[1]:
        return None, None, ""
    eps, at = found
    return attack_error_estimate(at["erm"]), attack_error_estimate(at["mixup"]), f"ε = {eps:.4g}, n = {at['erm']['n']}"


def probe_setting(rows: Sequence[Row]) -> tuple[int, float, dict[str, Row]] | None:
    """(pairs, λ, row per model) the probe claims are read at; None without probe rows.

    The largest pair count; among its rows, split 'train' with same-class pairs excluded when there are any
    (else all of them); the λ nearest 0.5.
    """
    if not rows:
        return None
    pairs = max(r["pairs"] for r in rows)
    at_pairs = [r for r in rows if r["pairs"] == pairs]
    chosen = [r for r in at_pairs if r["split"] == "train" and r["same_class"] == "exclude"] or at_pairs
    mid = min({r["lam"] for r in chosen}, key=lambda lam: abs(lam - 0.5))
    return pairs, mid, {r["model"]: r for r in chosen if r["lam"] == mid}


def probe_quantity(results: RunResults, *, value: str, lo: str, hi: str) -> Selection:
    """ERM's and mixup's probe columns (`value`, `lo`, `hi`) at `probe_setting`."""
    found = probe_setting(results.probe_rows)
    if found is None or "erm" not in found[2] or "mixup" not in found[2]:
        return None, None, ""
    pairs, mid, at = found
    erm, mix = (Estimate(at[m][value], at[m][lo], at[m][hi]) for m in ("erm", "mixup"))
    return erm, mix, f"λ = {mid:.2f}, {pairs} pairs"


def memorization_setting(jobs: Sequence[Row]) -> tuple[float, float, list[Row], list[Row]] | None:
    """(noise, α, ERM jobs, mixup jobs) the memorization claim is read at; None when either side is missing.

    Finished jobs without dropout; the noise level nearest 0.5; ERM is α = 0 and mixup the largest α > 0 at
    that noise. Every seed is kept, to be pooled.
    """
    done = [j for j in jobs if j.get("train_corrupted_err") is not None and j["dropout"] == 0]
    if not done:
        return None
    noise = min({j["noise"] for j in done}, key=lambda n: abs(n - 0.5))
    at_noise = [j for j in done if j["noise"] == noise]
    alpha = max(j["alpha"] for j in at_noise)
    erm = [j for j in at_noise if j["alpha"] == 0]
    mix = [j for j in at_noise if j["alpha"] == alpha and alpha > 0]
    return (noise, alpha, erm, mix) if erm and mix else None


def pooled_corrupted_error(jobs: Sequence[Row], n_corrupted: int) -> Estimate:
    """Mean training error on corrupted labels over seeds, with a Wilson interval over n_corrupted · seeds."""
    p = sum(j["train_corrupted_err"] for j in jobs) / len(jobs)
    return wilson_estimate(p, n_corrupted * len(jobs))


def memorization(results: RunResults) -> Selection:
    """ERM's and mixup's training error on the corrupted labels, seeds pooled, at `memorization_setting`."""
    found = memorization_setting(results.sweep_jobs) if results.n_train else None
    if found is None:
        return None, None, ""
    noise, alpha, erm, mix = found
    n = round(noise * results.n_train)  # corrupted examples per seed
    where = f"{noise:.0%} noise, mixup α = {alpha:g}, {len(erm)} seed(s)"
    return pooled_corrupted_error(erm, n), pooled_corrupted_error(mix, n), where


def clean_accuracy(results: RunResults) -> Selection:
    """ERM's and mixup's final test accuracy, each with a Wilson interval over n_test."""
    acc = results.final_test_acc
    erm, mix = (None if acc.get(m) is None else wilson_estimate(acc[m], results.n_test) for m in ("erm", "mixup"))
    return erm, mix, f"test split, n = {results.n_test}"


# --- the claims ----------------------------------------------------------------------------------------------

_T3W_ERM, _T3W_MIX = paper.table3("white", "top1", "ERM"), paper.table3("white", "top1", "mixup")
_T3B_ERM, _T3B_MIX = paper.table3("black", "top1", "ERM"), paper.table3("black", "top1", "mixup")
_T2_ERM = next(r for r in paper.TABLE2 if r.noise == 0.5 and r.method == "ERM")
_T2_MIX = next(r for r in paper.TABLE2 if r.noise == 0.5 and r.method.startswith("mixup ("))
_CIFAR_ERM, _CIFAR_MIX = paper.CIFAR_TEST_ERROR[("PreAct ResNet-18", "cifar10")]

CLAIMS: tuple[ClaimSpec, ...] = (
    ClaimSpec(
        key="fgsm_white",
        claim="mixup lowers white-box FGSM error",
        paper=f"top-1 error {_T3W_ERM.fgsm} → {_T3W_MIX.fgsm} (ImageNet, ε = 4/255)",
        direction="lower", unit="%", stage="fgsm",
        select=partial(attack_error, attack="fgsm", mode="white"),
    ),
    ClaimSpec(
        key="fgsm_black",
        claim="mixup lowers black-box FGSM error",
        paper=f"top-1 error {_T3B_ERM.fgsm} → {_T3B_MIX.fgsm} (ImageNet, ε = 4/255)",
        direction="lower", unit="%", stage="fgsm",
        select=partial(attack_error, attack="fgsm", mode="black"),
    ),
    ClaimSpec(
        key="ifgsm_black",
        claim="mixup lowers black-box I-FGSM error",
        paper=f"top-1 error {_T3B_ERM.ifgsm} → {_T3B_MIX.ifgsm} (ImageNet, ε = 4/255)",
        direction="lower", unit="%", stage="ifgsm",
        select=partial(attack_error, attack="ifgsm", mode="black"),
    ),
    ClaimSpec(
        key="probe_miss_rate",
        claim="mixup lowers the miss rate between training pairs",
        paper=paper.FIGURE2["miss_rate"],
        direction="lower", unit="%", stage="probe",
        select=partial(probe_quantity, value="miss_rate", lo="miss_lo", hi="miss_hi"),
    ),
    ClaimSpec(
        key="probe_grad_norm",
        claim="mixup lowers the input-gradient norm between training pairs",
        paper=paper.FIGURE2["grad_norm"],
        direction="lower", unit="", stage="probe",
        select=partial(probe_quantity, value="grad_norm", lo="norm_lo", hi="norm_hi"),
    ),
    ClaimSpec(
        key="memorization",
        claim="mixup memorizes fewer corrupted labels (higher training error on them)",
        paper=f"training error on corrupted labels {_T2_ERM.train_corrupted} → {_T2_MIX.train_corrupted} "
        "(CIFAR-10, 50% noise)",
        direction="higher", unit="%", stage="sweep",
        select=memorization,
    ),
    ClaimSpec(
        key="clean_accuracy",
        claim="mixup's clean accuracy is no worse",
        paper=f"test accuracy {100 - _CIFAR_ERM:.1f} → {100 - _CIFAR_MIX:.1f} (CIFAR-10, PreAct ResNet-18)",
        direction="no_worse_higher", unit="%", stage="train",
        select=clean_accuracy,
    ),
)  # fmt: skip


def judge(spec: ClaimSpec, results: RunResults, *, commands: Mapping[str, str]) -> Claim:
    """The `Claim` for one row of `CLAIMS`, carrying `commands[spec.stage]` (or ''): what fills it if not measured."""
    erm, mix, where = spec.select(results)
    measured = erm is not None and mix is not None
    return Claim(
        claim=spec.claim, paper=spec.paper, erm=erm, mixup=mix, where=where,
        verdict=verdict(erm, mix, spec.direction) if measured else "not measured",
        unit=spec.unit, command=commands.get(spec.stage, ""), key=spec.key,
    )  # fmt: skip


def assess(results: RunResults, *, commands: Mapping[str, str]) -> list[Claim]:
    """One `Claim` per row of `CLAIMS`, in order, from a run's stored results (nothing is recomputed).

    `commands` maps a stage ('train', 'fgsm', 'ifgsm', 'probe', 'sweep') to the command line that fills it.
    """
    return [judge(spec, results, commands=commands) for spec in CLAIMS]
