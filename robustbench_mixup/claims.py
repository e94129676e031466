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
from .config import ATTACKS, AttackConfig

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


# --- does the FGSM gain survive a strong attack? -------------------------------------------------------------

STRONG: tuple[str, ...] = tuple(name for name, info in ATTACKS.items() if info.strong)  # the registry's order
FGSM_CLAIMS = {"fgsm_white": "white", "fgsm_black": "black"}  # the claims tested for survival, and their mode
WORST = "worst"  # the `Gain.attack` of the worst case over every attack run at an ε (white box)
SEVERITY = {"survives": 0, "vanishes": 1, "reverses": 2}  # which strong attack decides the headline

STRONG_RULE = (
    "mixup's gain is its top-1 accuracy minus ERM's, paired on the same examples (Newcombe 95% interval, exact "
    "McNemar test). There is an FGSM gain to test only when the FGSM interval lies above 0. Under a strong attack "
    "the gain survives when its interval lies above 0, vanishes when it includes 0 and reverses when it lies below "
    "0; the headline is the most severe of the strong attacks and the worst case at the FGSM claim's ε."
)


@dataclass(frozen=True)
class Gain:
    """mixup − ERM top-1 accuracy under one attack at one (ε, n), paired on the same examples."""

    attack: str  # a key of ATTACKS, or WORST
    label: str  # as the report prints it: "APGD-CE", "worst case"
    erm_top1: float
    mixup_top1: float
    diff: Any  # stats.PairedDifference, or None when a row was stored without its per-example outcomes
    setting: str = ""  # "50 steps, 5 restarts"; for the worst case, the attacks it is over

    @property
    def outcome(self) -> str:
        """'survives' (interval above 0), 'vanishes' (includes 0), 'reverses' (below 0) or 'not paired'."""
        if self.diff is None:
            return "not paired"
        return "survives" if self.diff.lo > 0 else "reverses" if self.diff.hi < 0 else "vanishes"


@dataclass(frozen=True)
class GainsAtEps:
    """FGSM's gain beside the strong attacks' (registry order, then the worst case) at one ε and n."""

    eps: float
    n: int
    fgsm: Gain
    strong: tuple[Gain, ...]


@dataclass(frozen=True)
class StrongVerdict:
    """Does mixup's FGSM gain of one FGSM claim (white or black box) survive a strong attack?"""

    key: str  # the FGSM claim's `ClaimSpec.key`: 'fgsm_white' | 'fgsm_black'
    claim: str
    mode: str  # 'white' | 'black'
    verdict: str  # survives | vanishes | reverses | no FGSM gain to test | not paired: re-run | no FGSM result
    #               | no strong attack run
    sentence: str  # the headline in words
    eps: float | None = None  # the headline ε
    n: int | None = None
    note: str = ""  # why the headline is not at the FGSM claim's ε, which attacks could not be paired
    table: tuple[GainsAtEps, ...] = ()  # every ε where FGSM and a strong attack both ran, ascending
    needs: tuple[AttackConfig, ...] = ()  # the evaluations that would decide it (to run, or to re-run)


def _setting(row: Row) -> str:
    info = ATTACKS[row["attack"]]
    words = [f"{row['steps']} steps"] if info.iterative else []
    if row.get("restarts", 1) != 1:
        words.append(f"{row['restarts']} restarts")
    if row.get("precision", "fp32") != "fp32":
        words.append(row["precision"])
    return ", ".join(words)


def _strength(key_rows: tuple[tuple, dict[str, Row]]) -> tuple:
    """Order of preference among settings of one attack at one (ε, n): exact fp32 first, then the most
    steps × restarts (the strongest evaluation stored), then the latest."""
    (_, rows) = key_rows
    r = rows["erm"]
    return (r.get("precision", "fp32") == "fp32", r["steps"] * r.get("restarts", 1), str(r.get("created", "")))


def paired_rows(
    rows: Sequence[Row], attack: str, mode: str, eps: float, n: int, *, source: str | None = None
) -> dict[str, Row] | None:
    """ERM's and mixup's native rows of one evaluation of `attack` at (`mode`, ε, n), scored on the same
    examples; among several settings, `_strength`'s choice. `source`: the black box's (None: white box)."""
    settings: dict[tuple, dict[str, Row]] = {}
    for r in rows:
        if (r["attack"], r["mode"], r["backend"], r["eps"], r["n"]) != (attack, mode, "native", eps, n):
            continue
        if mode == "black" and r["source"] != source:
            continue
        key = (r["steps"], r["step_size"], r.get("restarts", 1), r.get("seed", 0), r.get("precision", "fp32"))
        settings.setdefault(key, {})[r["model"]] = r
    complete = [(k, v) for k, v in settings.items() if "erm" in v and "mixup" in v]
    return max(complete, key=_strength)[1] if complete else None


def _paired(erm: Any, mixup: Any) -> Any:
    if erm is None or mixup is None or len(erm) != len(mixup):
        return None
    from .stats import paired_difference  # torch is imported only when outcomes are there to compare

    return paired_difference(erm, mixup)


def _gain(attack: str, at: dict[str, Row]) -> Gain:
    erm, mix = at["erm"], at["mixup"]
    label = ATTACKS[attack].label
    return Gain(attack, label, erm["top1"], mix["top1"], _paired(erm.get("correct"), mix.get("correct")), _setting(erm))


def _worst_gain(worst: Sequence[Row], eps: float, n: int) -> Gain | None:
    at = {w["model"]: w for w in worst if w["eps"] == eps and w["n"] == n}
    if "erm" not in at or "mixup" not in at:
        return None
    erm, mix = at["erm"], at["mixup"]
    over = ", ".join(ATTACKS[a].label if a in ATTACKS else a for a in erm["attacks"])
    return Gain(WORST, "worst case", erm["top1"], mix["top1"], _paired(erm.get("correct"), mix.get("correct")), over)


def gains_table(rows: Sequence[Row], worst: Sequence[Row], mode: str, source: str | None = None) -> list[GainsAtEps]:
    """At each ε > 0 where native FGSM and at least one strong attack both ran on the same n examples (the
    largest such n), FGSM's paired gain beside each strong attack's and, in the white box, the worst case's."""
    keys = sorted({(r["eps"], r["n"]) for r in rows if r["attack"] == "fgsm" and r["mode"] == mode and r["eps"] > 0})
    out: dict[float, GainsAtEps] = {}
    for eps, n in keys:  # ascending n: a larger n at the same ε replaces a smaller one
        fgsm = paired_rows(rows, "fgsm", mode, eps, n, source=source)
        strong = {a: paired_rows(rows, a, mode, eps, n, source=source) for a in STRONG}
        gains = tuple(_gain(a, at) for a, at in strong.items() if at is not None)
        if fgsm is None or not gains:
            continue
        extra = _worst_gain(worst, eps, n) if mode == "white" else None
        out[eps] = GainsAtEps(eps, n, _gain("fgsm", fgsm), gains + ((extra,) if extra else ()))
    return [out[e] for e in sorted(out)]


def _points(x: float) -> str:
    return f"{100 * x:.1f}".replace("-0.0", "0.0")


def _interval(d: Any) -> str:
    return f"[{_points(d.lo)}, {_points(d.hi)}]"


def describe(fgsm: Gain, strong: Gain) -> str:
    """One strong attack's outcome, in words: "mixup's FGSM gain of 12.3 points shrinks to 1.2 under APGD-CE
    (interval [-0.4, 2.8] includes 0: vanishes)"."""
    if strong.diff is None:
        return f"{strong.label}: not paired: re-run (stored without per-example outcomes)"
    f, s = 100 * fgsm.diff.diff, 100 * strong.diff.diff
    if round(s, 1) < 0:
        moves = f"turns into a loss of {_points(-strong.diff.diff)} points"
    elif round(s, 1) < round(f, 1):
        moves = f"shrinks to {_points(strong.diff.diff)}"
    elif round(s, 1) > round(f, 1):
        moves = f"grows to {_points(strong.diff.diff)}"
    else:
        moves = f"stays at {_points(strong.diff.diff)}"
    where = "under the worst case" if strong.attack == WORST else f"under {strong.label}"
    side = {"survives": "excludes 0", "vanishes": "includes 0", "reverses": "lies below 0"}[strong.outcome]
    return (f"mixup's FGSM gain of {_points(fgsm.diff.diff)} points {moves} {where} "
            f"(interval {_interval(strong.diff)} {side}: {strong.outcome})")  # fmt: skip


def _rerun(rows: Sequence[Row], attack: str, mode: str, n: int) -> AttackConfig:
    """The evaluation that stores `attack`'s outcomes again: its stored ε grid, n and setting."""
    mine = [r for r in rows if (r["attack"], r["mode"], r["backend"], r["n"]) == (attack, mode, "native", n)]
    info = ATTACKS[attack]
    r = max(mine, key=lambda r: r["steps"] * r.get("restarts", 1))
    return AttackConfig(
        attack, tuple(sorted({x["eps"] for x in mine})), n=n,
        steps=r["steps"] if "steps" in info.options and r["steps"] != info.default_steps else None,
        restarts=r.get("restarts", 1) if "restarts" in info.options else 1,
    )  # fmt: skip


def strong_verdict(spec: ClaimSpec, rows: Sequence[Row], worst: Sequence[Row]) -> StrongVerdict:
    """Whether the FGSM claim `spec` survives a strong attack; see `strong_attack_verdicts`."""
    mode = FGSM_CLAIMS[spec.key]
    base = {"key": spec.key, "claim": spec.claim, "mode": mode}
    found = strongest_native_attack(rows, "fgsm", mode)
    if found is None or "erm" not in found[1] or "mixup" not in found[1]:
        grid = tuple(float(e) for e in ATTACKS["fgsm"].example_eps)
        sentence = "FGSM has not been run on both models"
        return StrongVerdict(**base, verdict="no FGSM result", sentence=sentence, needs=(AttackConfig("fgsm", grid),))
    claim_eps, at = found
    n = at["erm"]["n"]
    table = gains_table(rows, worst, mode, at["erm"]["source"] if mode == "black" else None)
    if not table:
        native = ("fgsm", mode, "native", n)
        grid = tuple(sorted({r["eps"] for r in rows if (r["attack"], r["mode"], r["backend"], r["n"]) == native}))
        strong = ", ".join(ATTACKS[a].label for a in STRONG)
        sentence = f"no strong attack ({strong}) has been run at an FGSM ε on the same {n} examples"
        needs = tuple(AttackConfig(a, tuple(e for e in grid if e > 0), n=n) for a in STRONG)
        return StrongVerdict(**base, verdict="no strong attack run", sentence=sentence, n=n, needs=needs)
    head = next((g for g in table if g.eps == claim_eps), table[-1])
    notes = []
    if head.eps != claim_eps:
        notes.append(f"no strong attack at the FGSM claim's ε = {claim_eps:.4g}: read at ε = {head.eps:.4g}, the "
                     "largest ε where both ran")  # fmt: skip
    unpaired = [g for g in (head.fgsm, *head.strong) if g.diff is None]
    if unpaired:
        notes.append(f"stored without per-example outcomes: {', '.join(g.label for g in unpaired)}")
    found_at = {"eps": head.eps, "n": head.n, "note": "; ".join(notes), "table": tuple(table)}
    paired = [g for g in head.strong if g.diff is not None]
    d = head.fgsm.diff
    if d is not None and d.lo <= 0:
        side = "includes 0" if d.hi >= 0 else "lies below 0"
        sentence = f"mixup − ERM under FGSM is {_points(d.diff)} points, interval {_interval(d)} {side}"
        return StrongVerdict(**base, verdict="no FGSM gain to test", sentence=sentence, **found_at)
    if d is None or not paired:
        which = "FGSM was" if d is None else "the strong attacks were"
        sentence = f"{which} stored without per-example outcomes: re-run to pair ERM and mixup on the same examples"
        needs = tuple(_rerun(rows, g.attack, mode, head.n) for g in unpaired if g.attack != WORST)
        return StrongVerdict(**base, verdict="not paired: re-run", sentence=sentence, needs=needs, **found_at)
    decisive = max(paired, key=lambda g: (SEVERITY[g.outcome], -g.diff.diff))
    return StrongVerdict(**base, verdict=decisive.outcome, sentence=describe(head.fgsm, decisive), **found_at)


def strong_attack_verdicts(rows: Sequence[Row], worst: Sequence[Row] = ()) -> list[StrongVerdict]:
    """For each FGSM claim of `CLAIMS` (white and black box): does mixup's FGSM gain survive a strong attack?

    `rows` are a run's stored `attack_results` rows with their per-example outcomes (`correct`, a bool tensor
    or None for rows stored before outcomes were kept); `worst` its `worst_case` rows. At each ε where native
    FGSM and at least one strong attack (PGD, APGD-CE, APGD-DLR) ran on the same examples, mixup − ERM top-1
    accuracy is taken under each, paired (`stats.paired_difference`), with the worst case in the white box.
    The headline is read at the FGSM claim's ε (the largest native FGSM ε), or, when no strong attack ran
    there, at the largest ε where both did (the verdict's `note` says so); its rule is `STRONG_RULE`.
    Nothing is guessed: rows without outcomes give "not paired: re-run".
    """
    return [strong_verdict(s, rows, worst) for s in CLAIMS if s.key in FGSM_CLAIMS]
