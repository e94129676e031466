"""The paper's claims as a table, and the rule that turns paired measurements into a verdict on each.

ERM and mixup are scored on the SAME test images, probed at the SAME pairs and, in the memorization
sweep, trained on the SAME corrupted labels; so every claim is judged on the paired difference
mixup − ERM, per example (or pair), which is far more powerful than comparing two marginal intervals.
A run that trains more methods (`TrainConfig.methods`: CutMix, Manifold Mixup, label smoothing) has each
claim judged for each of them against ERM in the same way, and Holm's correction runs over every claim of
every method.
A claim about a training method is a claim over training seeds: in a group of runs that differ only in
their seed (`robust-eval run --seeds 0 1 2`) each seed's paired difference is one replicate, and the
interval accounts for seed-to-seed as well as test-sample variation (`stats.pooled_effect`). With one
seed the interval covers test-sample variation only, and the report says so.

The verdict (`RULE`): a claim that mixup lowers (raises) a quantity is *reproduced* when the 95% interval
of the difference lies entirely on the claimed side of 0, *contradicted* when it lies entirely on the
other side, *inconclusive* otherwise; "no worse" (clean accuracy) is judged against a margin of
`MARGIN`. A verdict other than inconclusive also needs its p-value to stay below 5% after Holm's
correction over the claims of the report. A claim worded "at every λ" is tested as worded: every λ of the
grid must hold (an intersection-union test), and it is contradicted where a λ significantly goes the other
way (Holm over the λ).

The claims are rows of `CLAIMS`, one `ClaimSpec` each: what is claimed, the paper's figure, the direction,
the unit, the stage that measures it, and a `select` function that picks the paired per-unit outcomes out
of one run's stored results (`RunResults`), or says why it cannot. Every selection rule is a small pure
function below; `assess` pools the runs of a group and applies the rule. To add a claim, add one row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from statistics import NormalDist
from typing import Any, Literal, get_args

from robustbench_mixup.settings.config import (
    ATTACKS,
    BASELINE,
    DEFAULT_METHODS,
    METHODS,
    PAPER_METHOD,
    AttackSetting,
    training_images,
)
from robustbench_mixup.verdicts import paper

Direction = Literal["lower", "higher", "no_worse"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)
# The stages whose suggested command (`commands.stage_commands`) can fill a claim: every attack is one.
FILLED_BY: tuple[str, ...] = ("train", *ATTACKS, "probe", "sweep")
ALPHA = 0.05  # family-wise, over the claims of one report (Holm)
MARGIN = 0.01  # "no worse": mixup's clean accuracy may be lower by at most 1 point
VERDICTS = ("reproduced", "contradicted", "inconclusive", "not measured")

RULE = (
    "Each claim is judged on the paired difference method − ERM (mixup, and any other method the run trained; the "
    "same test examples, probe pairs or corrupted labels for both). A claim that a method lowers (raises) a quantity "
    "is reproduced when the 95% interval "
    "of the difference lies entirely below (above) 0, contradicted when it lies entirely on the other side, and "
    f'inconclusive otherwise; "no worse" is reproduced when the interval lies above −{100 * MARGIN:g} point and '
    f"contradicted when it lies below it. A reproduced or contradicted verdict also needs p < {ALPHA:g} after "
    "Holm's correction over the claims of the report (every claim of every method). A claim worded "
    '"at every λ" must hold at every λ of the grid (intersection-union test) and is contradicted where a λ '
    "significantly goes the other way (Holm over λ)."
)

Row = Mapping[str, Any]
Replicate = tuple[Any, Any]  # (ERM's, the method's) per-unit outcomes on the same units: bool or float arrays


@dataclass(frozen=True)
class RunResults:
    """One run's stored results, as `evidence.collect` reads them from the database (nothing is recomputed)."""

    dataset: str = ""
    model: str = ""
    train_n: int | None = None  # the run's training subset (`TrainConfig.train_n`; None: all images)
    methods: tuple[str, ...] = DEFAULT_METHODS  # the methods the run trained (`TrainConfig.methods`)
    claim_eps: float | None = None  # the ε the attack claims are read at (`config.CLAIM_EPS`)
    clean_rows: Sequence[Row] = ()  # `clean_results`, with `correct`
    attack_rows: Sequence[Row] = ()  # with `correct` (None for rows stored before v5)
    probe_rows: Sequence[Row] = ()  # with `missed` and `norms` (None for rows stored before v6)
    sweep_config: Mapping[str, Any] | None = None  # of the sweep named like the run
    sweep_jobs: Sequence[Row] = ()  # its finished jobs, with `corrupted_fit`
    imported: bool = False  # models trained elsewhere (`robust-eval import`): nothing here trained them


@dataclass(frozen=True)
class Measured:
    """What one run contributes to a claim: at each point (an ε, a λ, or 0 for a single setting) the paired
    per-unit outcomes of each replicate it holds (one, or a sweep's seeds)."""

    points: Mapping[float, Sequence[Replicate]]
    axis: str  # "ε" | "λ" | "" (one setting)
    decisive: float | None  # the point the verdict reads; None: every point must hold
    where: str  # the setting, in words
    unit_name: str = "test examples"  # what a unit is, for the power sentence
    note: str = ""
    shared: bool = False  # every run of a group measures the same units (the test images), not units of its own
    setting: tuple = ()  # what must match for runs of a group to be pooled (n, source, probe setting, ...)
    keys: Mapping[float, Sequence[Any]] | None = None  # per point, what identifies each replicate across runs


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of the paper: one row of `CLAIMS`."""

    key: str  # stable identifier
    claim: str  # "{method} lowers ...": the method's label is put in
    paper: str  # the paper's figure for mixup, as text
    direction: Direction
    unit: str  # "%" (a proportion, shown ×100, differences in points) or "" (shown as measured)
    stage: str  # the stage (one of FILLED_BY) whose command fills the claim when it is not measured
    select: Callable[[RunResults, str], Measured | str]  # (results, method); a str says why it is not measured
    paper_diff: float | None = None  # the paper's mixup − ERM in the claim's unit (points for %), if it gives one

    def wording(self, method: str) -> str:
        """The claim about `method` (a key of `config.METHODS`)."""
        return self.claim.format(method=METHODS[method].label)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.stage not in FILLED_BY:
            raise ValueError(f"stage must be one of {FILLED_BY}, got {self.stage!r}")


@dataclass
class Claim:
    """A claim judged on one run or on a group of seeds."""

    key: str
    claim: str
    paper: str
    direction: Direction
    unit: str
    verdict: str  # one of VERDICTS
    method: str = PAPER_METHOD  # the method compared with ERM
    where: str = ""
    effect: Any = None  # stats.Effect at `at`: the decisive point, or the least favourable one
    at: float | None = None
    axis: str = ""
    points: tuple[tuple[float, Any], ...] = ()  # (x, stats.Effect) at every point: the curve
    erm: float | None = None  # the two means at `at`, over seeds: ERM's and the method's
    other: float | None = None
    p_value: float | None = None  # the claim's own p (before Holm)
    p_holm: float | None = None
    holds: str = ""  # for a claim at every λ: where it holds
    power: str = ""  # for an inconclusive claim: what would detect the observed difference
    note: str = ""
    command: str = ""  # what fills a claim that is not measured
    paper_diff: float | None = None
    seeds: int = 0
    runs: int = 0  # runs that measured it
    unit_name: str = "test examples"  # what a unit is (`Measured.unit_name`), for the power sentence

    @property
    def ident(self) -> str:
        """Unique within a report: the claim's key, with the method's name unless it is mixup."""
        return self.key if self.method == PAPER_METHOD else f"{self.key}-{self.method}"


# --- selection rules: pure functions of one run's stored rows -------------------------------------------------


def _nearest(points: Sequence[float], target: float | None) -> float:
    return max(points) if target is None else min(points, key=lambda x: (abs(x - target), -x))


def read_setting(native: Sequence[Row], mode: str) -> tuple[int, str | None]:
    """The n and, in the black box, the source the claims read among one attack's native rows: the largest n,
    and the surrogate's transfer set where there is one (else the first stored); None in the white box."""
    n = max(r["n"] for r in native)
    if mode != "black":
        return n, None
    sources = sorted({r["source"] for r in native if r["n"] == n})
    return n, "surrogate" if "surrogate" in sources else sources[0]


def attack_points(results: RunResults, method: str, *, attack: str, mode: str) -> Measured | str:
    """Top-1 error of ERM and `method` under `attack` in `mode` (native backend), paired per test example, at
    every ε > 0 evaluated on the largest n; the verdict reads the claim's ε (`RunResults.claim_eps`, else the
    nearest evaluated ε, which the note names)."""
    native = [r for r in results.attack_rows
              if (r["attack"], r["mode"], r["backend"]) == (attack, mode, "native") and r["eps"] > 0]  # fmt: skip
    if not native:
        return f"{ATTACKS[attack].label} has not been run in the {mode} box"
    n, source = read_setting(native, mode)
    points: dict[float, list[Replicate]] = {}
    unpaired = False
    for eps in sorted({r["eps"] for r in native if r["n"] == n}):
        at = paired_rows(native, attack, mode, eps, n, source=source, method=method)
        if at is None:
            continue
        erm, mix = at[BASELINE].get("correct"), at[method].get("correct")
        if erm is None or mix is None:
            unpaired = True
            continue
        points[eps] = [(~erm, ~mix)]  # errors: the claims are about error
    if not points:
        if unpaired:
            return "stored without per-example outcomes (by an older robust-eval): run the attack again"
        return f"{ATTACKS[attack].label} has not been run on {BASELINE} and {method} in the {mode} box"
    decisive = _nearest(list(points), results.claim_eps)
    note = ""
    if results.claim_eps is not None and decisive != results.claim_eps:
        note = f"not evaluated at the claim's ε = {results.claim_eps:.4g}: read at the nearest, ε = {decisive:.4g}"
    where = f"ε = {decisive:.4g}, n = {n}" + (f", source {source}" if mode == "black" else "")
    return Measured(points, "ε", decisive, where, note=note, shared=True, setting=(n, source))


PROBE_SETTINGS = (("train", "exclude"), ("train", "include"), ("test", "exclude"), ("test", "include"))


def probe_setting(rows: Sequence[Row], method: str) -> tuple[str, str, int] | None:
    """The one probe setting the claims read: (split, same_class, pairs): training pairs of different classes
    when ERM and `method` were both probed so, else the first complete setting of PROBE_SETTINGS, at its
    largest pair count; None when no setting has both."""
    complete = [s for s in PROBE_SETTINGS if {BASELINE, method} <= {r["model"] for r in rows
                                                                    if (r["split"], r["same_class"]) == s}]  # fmt: skip
    if not complete:
        return None
    pairs = max(r["pairs"] for r in rows if (r["split"], r["same_class"]) == complete[0] and r["model"] in
                (BASELINE, method))  # fmt: skip
    return (*complete[0], pairs)


def probe_points(results: RunResults, method: str, *, column: str) -> Measured | str:
    """The probe's per-pair `column` ('missed' or 'norms') of ERM and `method` at every λ strictly between 0 and 1:
    the largest pair count, training pairs of different classes when stored (else what is)."""
    rows = results.probe_rows
    if not rows:
        return "the probe has not been run"
    # ONE setting, both models probed in it: training pairs of different classes when there are any
    setting = probe_setting(rows, method)
    if setting is None:
        return f"the probe has not been run on {BASELINE} and {method}"
    split, same, pairs = setting
    chosen = [r for r in rows
              if (r["split"], r["same_class"], r["pairs"]) == setting and r["model"] in (BASELINE, method)]  # fmt: skip
    by = {(r["model"], r["lam"]): r for r in chosen}
    points: dict[float, list[Replicate]] = {}
    for lam in sorted({r["lam"] for r in chosen if 0 < r["lam"] < 1}):
        erm, mix = by.get((BASELINE, lam)), by.get((method, lam))
        if erm is None or mix is None:
            continue
        if erm.get(column) is None or mix.get(column) is None:
            return "stored without per-pair outcomes (by an older robust-eval): run the probe again"
        points[lam] = [(erm[column], mix[column])]
    if not points:
        return "the probe has no λ strictly between 0 and 1 (the claim is about those): run it with --lambdas 3 or more"
    kind = "of different classes" if same == "exclude" else "(same class included)"
    where = f"{pairs} {split} pairs {kind}, λ = {min(points):.2f}-{max(points):.2f}"
    return Measured(points, "λ", None, where, unit_name="pairs", setting=(split, same, pairs))


def memorization_points(results: RunResults, method: str) -> Measured | str:
    """Training error on the corrupted labels, ERM (α = 0) and `method` (its largest α, or smoothing factor)
    paired per corrupted example of the same (noise, seed), one replicate per seed; finished jobs without
    dropout at the noise nearest 0.5. Only a sweep of the run's own dataset, network and training images counts."""
    cfg = results.sweep_config
    if results.imported:
        return "imported models: memorization is measured on models the sweep trains itself"
    if cfg is None:
        return "no memorization sweep is named like the run"
    if (cfg.get("dataset"), cfg.get("model")) != (results.dataset, results.model):
        return (f"the sweep named like the run trained {cfg.get('model')} on {cfg.get('dataset')}, not this run's "
                f"{results.model} on {results.dataset}")  # fmt: skip
    if cfg.get("train_n") != results.train_n:
        return (f"the sweep named like the run trained on {training_images(cfg.get('train_n'))}, the run on "
                f"{training_images(results.train_n)}")  # fmt: skip
    done = [j for j in results.sweep_jobs if j.get("train_corrupted_err") is not None and j["dropout"] == 0]
    if not done:
        return "the sweep has no finished job without dropout"
    noise = min({j["noise"] for j in done}, key=lambda x: abs(x - 0.5))
    at_noise = [j for j in done if j["noise"] == noise]
    mine = [j for j in at_noise if j.get("mixing", "mixup") == method and j["alpha"] > 0]
    info = METHODS[method]
    if not mine:
        return f"the sweep trained no {info.label} job at {noise:.0%} noise (its --methods)"
    alpha = max(j["alpha"] for j in mine)
    erm = {j["seed"]: j for j in at_noise if j["alpha"] == 0}
    mix = {j["seed"]: j for j in mine if j["alpha"] == alpha}
    seeds = sorted(set(erm) & set(mix))
    if not seeds:
        return f"the sweep has no ERM (α = 0) and {info.label} job of the same seed at {noise:.0%} noise"
    replicates = []
    for s in seeds:
        a, b = erm[s].get("corrupted_fit"), mix[s].get("corrupted_fit")
        if a is None or b is None:
            return ("stored without per-example outcomes (by an older robust-eval): run the sweep again (finished "
                    "jobs are read back from their checkpoints, not retrained)")  # fmt: skip
        replicates.append((~a, ~b))  # error on the corrupted labels: not memorized
    where = f"{noise:.0%} noise, {info.label} {info.symbol} = {alpha:g}"  # its seeds: in the method's words
    return Measured({0.0: replicates}, "", 0.0, where, unit_name="corrupted examples", setting=(noise, alpha),
                    keys={0.0: [f"sweep seed {s}" for s in seeds]})  # fmt: skip


def clean_points(results: RunResults, method: str) -> Measured | str:
    """Clean top-1 accuracy of ERM and `method` after the last epoch, paired per test example."""
    rows = {r["model"]: r for r in results.clean_rows if r["split"] == "test"}
    if BASELINE not in rows or method not in rows:
        return ("no per-example test outcomes stored (training unfinished, or by an older robust-eval): finish or "
                "resume the training")  # fmt: skip
    erm, mix = rows[BASELINE], rows[method]
    return Measured({0.0: [(erm["correct"], mix["correct"])]}, "", 0.0, f"test split, n = {erm['n']}", shared=True,
                    setting=(erm["n"],))  # fmt: skip


# --- the claims ----------------------------------------------------------------------------------------------

_T3W_ERM, _T3W_MIX = paper.table3("white", "top1", "ERM"), paper.table3("white", "top1", "mixup")
_T3B_ERM, _T3B_MIX = paper.table3("black", "top1", "ERM"), paper.table3("black", "top1", "mixup")
_T2_ERM = next(r for r in paper.TABLE2 if r.noise == 0.5 and r.method == "ERM")
_T2_MIX = next(r for r in paper.TABLE2 if r.noise == 0.5 and r.method.startswith("mixup ("))
_CIFAR_ERM, _CIFAR_MIX = paper.CIFAR_TEST_ERROR[("PreAct ResNet-18", "cifar10")]

CLAIMS: tuple[ClaimSpec, ...] = (
    ClaimSpec(
        key="fgsm_white",
        claim="{method} lowers white-box FGSM error",
        paper=f"top-1 error {_T3W_ERM.fgsm} → {_T3W_MIX.fgsm} (ImageNet, ε = 4/255)",
        direction="lower", unit="%", stage="fgsm",
        select=partial(attack_points, attack="fgsm", mode="white"), paper_diff=_T3W_MIX.fgsm - _T3W_ERM.fgsm,
    ),
    ClaimSpec(
        key="fgsm_black",
        claim="{method} lowers black-box FGSM error",
        paper=f"top-1 error {_T3B_ERM.fgsm} → {_T3B_MIX.fgsm} (ImageNet, ε = 4/255)",
        direction="lower", unit="%", stage="fgsm",
        select=partial(attack_points, attack="fgsm", mode="black"), paper_diff=_T3B_MIX.fgsm - _T3B_ERM.fgsm,
    ),
    ClaimSpec(
        key="ifgsm_black",
        claim="{method} lowers black-box I-FGSM error",
        paper=f"top-1 error {_T3B_ERM.ifgsm} → {_T3B_MIX.ifgsm} (ImageNet, ε = 4/255)",
        direction="lower", unit="%", stage="ifgsm",
        select=partial(attack_points, attack="ifgsm", mode="black"), paper_diff=_T3B_MIX.ifgsm - _T3B_ERM.ifgsm,
    ),
    ClaimSpec(
        key="probe_miss_rate",
        claim="{method} lowers the miss rate between training pairs at every λ strictly between 0 and 1",
        paper=paper.FIGURE2["miss_rate"],
        direction="lower", unit="%", stage="probe", select=partial(probe_points, column="missed"),
    ),
    ClaimSpec(
        key="probe_grad_norm",
        claim="{method} lowers the input-gradient norm between training pairs at every λ strictly between 0 and 1",
        paper=paper.FIGURE2["grad_norm"],
        direction="lower", unit="", stage="probe", select=partial(probe_points, column="norms"),
    ),
    ClaimSpec(
        key="memorization",
        claim="{method} memorizes fewer corrupted labels (higher training error on them)",
        paper=f"training error on corrupted labels {_T2_ERM.train_corrupted} → {_T2_MIX.train_corrupted} "
        "(CIFAR-10, 50% noise)",
        direction="higher", unit="%", stage="sweep", select=memorization_points,
        paper_diff=_T2_MIX.train_corrupted - _T2_ERM.train_corrupted,
    ),
    ClaimSpec(
        key="clean_accuracy",
        claim=f"{{method}}'s clean accuracy is no worse (by at most {100 * MARGIN:g} point)",
        paper=f"test accuracy {100 - _CIFAR_ERM:.1f} → {100 - _CIFAR_MIX:.1f} (CIFAR-10, PreAct ResNet-18)",
        direction="no_worse", unit="%", stage="train", select=clean_points, paper_diff=_CIFAR_ERM - _CIFAR_MIX,
    ),
)  # fmt: skip


# --- the rule ------------------------------------------------------------------------------------------------


def side(effect: Any, direction: Direction) -> str:
    """'claimed', 'other' or 'neither': where the interval of `effect` lies against the claim."""
    lo, hi = effect.lo, effect.hi
    if direction == "lower":
        return "claimed" if hi < 0 else "other" if lo > 0 else "neither"
    if direction == "higher":
        return "claimed" if lo > 0 else "other" if hi < 0 else "neither"
    if direction == "no_worse":
        return "claimed" if lo > -MARGIN else "other" if hi < -MARGIN else "neither"
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def claim_p(effect: Any, direction: Direction) -> float:
    """The p-value of the claim's test: two-sided against 0; for "no worse", two-sided against −MARGIN (so it
    matches the two-sided 95% interval the verdict reads, and stays a valid p-value for Holm at the margin),
    from the effect's standard error and degrees of freedom."""
    if direction != "no_worse":
        return float(effect.p_value)
    from robustbench_mixup.measures.stats import t_upper_tail

    if math.isnan(effect.se):
        return 1.0
    if effect.se == 0:
        return 0.0 if effect.diff != -MARGIN else 1.0
    return min(1.0, 2 * t_upper_tail(abs(effect.diff + MARGIN) / effect.se, effect.df))


def _holds(points: Sequence[tuple[float, Any]], direction: Direction, axis: str) -> str:
    held = [x for x, e in points if side(e, direction) == "claimed"]
    if not held:
        return f"holds at no {axis}"
    if len(held) == len(points):
        return f"holds at every {axis} ({len(points)})"
    return f"holds at {len(held)} of {len(points)} {axis}: " + ", ".join(f"{x:.2f}" for x in held)


POWER = 0.8


def _power(effect: Any, direction: Direction, unit_name: str) -> str:
    """What would detect the observed difference (from 0, or for "no worse" from the margin) with 80% power at
    the 5% level, in words: test examples for one seed; seeds for a group, unless the variation of the test
    examples every seed shares is already too large for any number of seeds."""
    from robustbench_mixup.measures.stats import examples_for_power, seeds_to_detect, units_for_power

    diff = effect.diff + (MARGIN if direction == "no_worse" else 0.0)
    if diff == 0:
        return "no difference was observed: no sample size would detect it"
    if effect.seeds >= 2:
        needed = seeds_to_detect(diff, effect.var_seeds, effect.var_units, effect.n, start=effect.seeds + 1,
                                 power=POWER, alpha=ALPHA)  # fmt: skip
        if needed is not None:
            return f"about {needed} seeds would detect this difference with 80% power"
        z = NormalDist().inv_cdf(1 - ALPHA / 2) + NormalDist().inv_cdf(POWER)
        if math.isfinite(effect.var_units) and (z * z) * effect.var_units >= diff * diff:
            return (f"the variation of the {effect.n:,} {unit_name} all seeds share hides it: more {unit_name}, not "
                    "more seeds, would detect it")  # fmt: skip
        return "more than 1,000 seeds would be needed to detect this difference"
    if direction != "no_worse" and effect.n01 is not None and effect.n01 + effect.n10 > 0:
        needed = examples_for_power(effect.n01, effect.n10, effect.n)
    elif math.isfinite(effect.sd_unit):
        needed = units_for_power(diff, effect.sd_unit)
    else:
        return ""  # a single unit: nothing to size from
    if needed is None:
        return "no difference was observed: no sample size would detect it"
    return f"about {needed:,} {unit_name} (or more seeds) would detect this difference with 80% power"


def judge(
    spec: ClaimSpec, measured: Sequence[Measured | str], *, method: str, command: str = "", seed: int = 0
) -> Claim:
    """The `Claim` for one row of `CLAIMS` about `method` from what each run of a group measured (one run: a
    single seed), before Holm's correction (see `assess`). The paper's figures are mixup's: other methods
    are shown without them."""
    mixup = method == PAPER_METHOD
    base = {"key": spec.key, "claim": spec.wording(method), "paper": spec.paper if mixup else "",
            "direction": spec.direction, "unit": spec.unit, "command": command, "method": method,
            "paper_diff": spec.paper_diff if mixup else None}  # fmt: skip
    got = [m for m in measured if isinstance(m, Measured)]
    if not got:
        why = next((m for m in measured if isinstance(m, str)), "")
        return Claim(**base, verdict="not measured", note=why)
    from robustbench_mixup.measures.stats import pooled_effect

    first = got[0]
    other = [m for m in got if m.setting != first.setting]  # measured otherwise (other n, pairs, ...): not pooled
    got = [m for m in got if m.setting == first.setting]
    pooled: list[tuple[float, Any]] = []
    repeated: set[Any] = set()
    for x in sorted({x for m in got for x in m.points}):  # every point any run measured
        replicates, seen = [], set()
        for m in got:
            for i, r in enumerate(m.points.get(x, ())):
                key = None if m.keys is None else m.keys[x][i]
                if key is not None and key in seen:  # the same replicate in two runs' results: counted once
                    repeated.add(key)
                    continue
                seen.add(key)
                replicates.append(r)
        shared = first.shared and len(got) > 1  # one replicate per run, all on the same test images
        pooled.append((x, pooled_effect(replicates, seed=seed, shared_units=shared)))
    notes = [first.note] if first.note else []
    if repeated:
        notes.append(f"{', '.join(sorted(map(str, repeated)))} appears in several runs' results: counted once")
    if len(got) + len(other) < len(measured):
        notes.append(f"measured in {len(got) + len(other)} of {len(measured)} runs")
    if other:
        notes.append(f"{len(other)} run(s) measured in another setting ({other[0].where}) left out of the pool")
    if first.decisive is not None:
        at, effect = next((x, e) for x, e in pooled if x == first.decisive)
        verdict = {"claimed": "reproduced", "other": "contradicted"}.get(side(effect, spec.direction), "inconclusive")
        p, holds = claim_p(effect, spec.direction), ""
    else:  # at every point: an intersection-union test, contradicted where a point significantly goes the other way
        p_points = [claim_p(e, spec.direction) for _, e in pooled]
        from robustbench_mixup.measures.stats import holm

        adjusted = holm(p_points)
        against = [(adj, x, e) for adj, (x, e) in zip(adjusted, pooled, strict=True)
                   if side(e, spec.direction) == "other" and adj < ALPHA]  # fmt: skip
        weakest = max(range(len(pooled)), key=lambda k: (p_points[k], -k))  # the λ whose p the claim's p is
        if all(side(e, spec.direction) == "claimed" for _, e in pooled):
            verdict, p = "reproduced", p_points[weakest]
            at, effect = pooled[weakest]
        elif against:
            adj, at, effect = min(against, key=lambda t: t[0])
            verdict, p = "contradicted", adj
        else:
            verdict, p = "inconclusive", p_points[weakest]
            at, effect = pooled[weakest]
        holds = _holds(pooled, spec.direction, first.axis)
    erm, mix = _means([r for m in got for r in m.points.get(at, ())])
    contributing = sum(1 for m in got if at in m.points)
    if contributing < len(got):
        notes.append(f"{first.axis} = {at:.3g} measured in {contributing} of {len(got)} runs")
    power = _power(effect, spec.direction, first.unit_name) if verdict == "inconclusive" else ""
    return Claim(**base, verdict=verdict, where=first.where, effect=effect, at=at, axis=first.axis,
                 points=tuple(pooled), erm=erm, other=mix, p_value=p, holds=holds, power=power,
                 note="; ".join(notes), seeds=effect.seeds, runs=contributing, unit_name=first.unit_name)  # fmt: skip


def _means(replicates: Sequence[Replicate]) -> tuple[float, float]:
    """ERM's and the method's means over the replicates (each the mean over its units)."""
    import numpy as np

    a = [float(np.mean(np.asarray(r[0], dtype=float))) for r in replicates]
    b = [float(np.mean(np.asarray(r[1], dtype=float))) for r in replicates]
    return sum(a) / len(a), sum(b) / len(b)


def compared_methods(group: Sequence[RunResults]) -> tuple[str, ...]:
    """The methods a group compares with ERM, in `config.METHODS` order (the runs of a group train the same)."""
    trained = {m for r in group for m in r.methods}
    return tuple(m for m in METHODS if m in trained and m != BASELINE)


def assess(group: Sequence[RunResults], *, commands: Mapping[str, str]) -> list[Claim]:
    """One `Claim` per compared method and row of `CLAIMS` (method by method, claims in order), pooling the
    runs of `group` (one run per seed; a single run is a group of one). `commands` maps a stage to the
    command that fills it. Holm's correction runs over every measured claim of every method: a reproduced or
    contradicted verdict whose adjusted p is not below `ALPHA` becomes inconclusive, and its note says so."""
    if not group:
        raise ValueError("assess needs at least one run")
    claims = [judge(spec, [spec.select(r, method) for r in group], command=commands.get(spec.stage, ""),
                    method=method)
              for method in compared_methods(group) for spec in CLAIMS]  # fmt: skip
    from robustbench_mixup.measures.stats import holm

    measured = [c for c in claims if c.p_value is not None]
    for c, adjusted in zip(measured, holm([c.p_value for c in measured]), strict=True):
        c.p_holm = adjusted
        if c.verdict in ("reproduced", "contradicted") and adjusted >= ALPHA:
            why = (f"{c.verdict} by its interval, but its p = {format_p(c.p_value)} is not below {ALPHA:g}"
                   if c.p_value >= ALPHA else f"{c.verdict} alone (p = {format_p(c.p_value)}), not after Holm's "
                   f"correction over {len(measured)} claims")  # fmt: skip
            c.note = "; ".join(filter(None, [c.note, why]))
            c.verdict = "inconclusive"
            c.power = _power(c.effect, c.direction, c.unit_name)
    return claims


def format_p(p: float) -> str:
    """A p-value for people: two significant digits; one too small for a float is '< 1e-300', not 0."""
    return "< 1e-300" if p < 1e-300 else f"{p:.2g}"


def p_equals(p: float) -> str:
    """A p-value in a sentence: "p = 0.006", or "p < 1e-300" (never "p = < 1e-300")."""
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def seeds_statement(claims: Sequence[Claim]) -> str:
    """What the intervals account for, in words, from the claim with the fewest seeds (naming the claims
    that rest on one seed when others rest on more)."""
    measured = [c for c in claims if c.effect is not None]
    if not measured:
        return ""
    single = [c for c in measured if c.seeds == 1]
    if len(single) == len(measured):
        return ("1 seed: the intervals cover test-sample variation only; seed-to-seed variation is not accounted "
                "for (for models this tool trains, a group of seeds is: 'robust-eval run --seeds 0 1 2').")  # fmt: skip
    counts = {c.seeds for c in measured if c.seeds > 1}
    seeds = f"{min(counts)} seeds" if len(counts) == 1 else f"{min(counts)} to {max(counts)} seeds"
    text = (f"{seeds}: each seed's paired difference is one replicate, and the intervals account for both "
            "seed-to-seed and test-sample variation.")  # fmt: skip
    if single:
        text += (" Only 1 seed, so test-sample variation only: "
                 + "; ".join(f"{c.claim}" for c in single) + ".")  # fmt: skip
    return text


# --- one evaluation of an attack, paired: the rows a claim (and the strong-attack verdicts) read -------------


def _strength(key_rows: tuple[AttackSetting, dict[str, Row]]) -> tuple:
    """Order of preference among settings of one attack at one (ε, n): exact fp32 first, then the most
    steps × restarts (the strongest evaluation stored), then the latest."""
    (setting, rows) = key_rows
    return (setting.precision == "fp32", setting.steps * setting.restarts, str(rows[BASELINE].get("created", "")))


def paired_rows(
    rows: Sequence[Row],
    attack: str,
    mode: str,
    eps: float,
    n: int,
    *,
    method: str,
    source: str | None = None,
) -> dict[str, Row] | None:
    """ERM's and `method`'s native rows of one evaluation of `attack` at (`mode`, ε, n), scored on the same
    examples; among several settings, `_strength`'s choice. `source`: the black box's (None: white box)."""
    settings: dict[AttackSetting, dict[str, Row]] = {}
    for r in rows:
        if (r["attack"], r["mode"], r["backend"], r["eps"], r["n"]) != (attack, mode, "native", eps, n):
            continue
        if mode == "black" and r["source"] != source:
            continue
        settings.setdefault(AttackSetting.of(r), {})[r["model"]] = r
    complete = [(k, v) for k, v in settings.items() if BASELINE in v and method in v]
    return max(complete, key=_strength)[1] if complete else None


def stage_setting_rows(rows: Sequence[Row], methods: Sequence[str]) -> list[Row]:
    """The native rows a report draws: per (attack, mode), the one setting the claims and the strong-attack
    verdicts read (`attack_points`, `paired_rows`): the largest n; in the black box the surrogate's transfer
    set where there is one; at each ε the strongest setting stored for ERM and the first other method (or,
    for a model alone, for it). Every other row is another setting: shown as a row of its own, not drawn."""
    out: list[Row] = []
    other = next((m for m in methods if m != BASELINE), BASELINE)
    for attack, mode in dict.fromkeys((r["attack"], r["mode"]) for r in rows if r["backend"] == "native"):
        native = [r for r in rows if (r["attack"], r["mode"], r["backend"]) == (attack, mode, "native")]
        n, source = read_setting(native, mode)
        for eps in sorted({r["eps"] for r in native if r["n"] == n}):
            here = [r for r in native if (r["eps"], r["n"]) == (eps, n) and (source is None or r["source"] == source)]
            at = paired_rows(native, attack, mode, eps, n, method=other, source=source)
            if at is not None:
                chosen = AttackSetting.of(at[BASELINE])
                out += [r for r in here if AttackSetting.of(r) == chosen]
                continue
            # not stored for both (an evaluation cut short): each model's own strongest setting, drawn alone
            for model in dict.fromkeys(r["model"] for r in here):
                out.append(max((r for r in here if r["model"] == model),
                               key=lambda r: _strength((AttackSetting.of(r), {BASELINE: r}))))  # fmt: skip
    return out
