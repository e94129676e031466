"""Does the FGSM gain survive a strong attack? Each method's gain over ERM under FGSM beside its gain
under PGD, APGD and the worst case over every attack run, paired on the same examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from robustbench_mixup.settings.config import (
    ATTACKS,
    BASELINE,
    METHODS,
    PAPER_METHOD,
    AttackConfig,
)
from robustbench_mixup.verdicts.claims import CLAIMS, ClaimSpec, Row, _nearest, paired_rows

STRONG: tuple[str, ...] = tuple(name for name, info in ATTACKS.items() if info.strong)  # the registry's order

FGSM_CLAIMS = {"fgsm_white": "white", "fgsm_black": "black"}  # the claims tested for survival, and their mode

WORST = "worst"  # the `Gain.attack` of the worst case over every attack run at an ε (white box)

SEVERITY = {"survives": 0, "vanishes": 1, "reverses": 2}  # which strong attack decides the headline

STRONG_RULE = (
    "A method's gain is its top-1 accuracy minus ERM's, paired on the same examples (Newcombe 95% interval, exact "
    "McNemar test). There is an FGSM gain to test only when the FGSM interval lies above 0. Under a strong attack "
    "the gain survives when its interval lies above 0, vanishes when it includes 0 and reverses when it lies below "
    "0; the headline is the most severe of the strong attacks and the worst case at the FGSM claim's ε."
)


@dataclass(frozen=True)
class Gain:
    """method − ERM top-1 accuracy under one attack at one (ε, n), paired on the same examples."""

    attack: str  # a key of ATTACKS, or WORST
    label: str  # as the report prints it: "APGD-CE", "worst case"
    erm_top1: float
    other_top1: float  # the method's
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
    """Does a method's FGSM gain of one FGSM claim (white or black box) survive a strong attack?"""

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
    method: str = PAPER_METHOD  # the method compared with ERM
    caveats: tuple[str, ...] = ()  # fired indicators of the strong attacks it reads, what each means for it
    decided_by: str = ""  # the strong attack (or "the worst case") whose outcome is the verdict
    fgsm_diff: Any = None  # the FGSM gain it tests (stats.PairedDifference) at the headline ε, where paired

    @property
    def fgsm_loss(self) -> bool:
        """The method is significantly worse than ERM under FGSM itself: no gain to test, and the claim that
        the method helps is contradicted, not merely untested."""
        return self.fgsm_diff is not None and self.fgsm_diff.hi < 0


# The indicators that say a strong attack's accuracy may be too high, and why (`attacks.indicators`).
CAVEATS = {"incomplete": "the loss was still rising at the last step",
           "doubling": "twice the steps changed the accuracy significantly (not converged)"}  # fmt: skip


def caveats(indicators: Sequence[Row], head: GainsAtEps, method: str) -> tuple[str, ...]:
    """One sentence per fired `CAVEATS` indicator of a strong attack that `head` reads, on ERM or `method`, on
    the same n examples ("not converged" is measured at one ε per attack: it speaks for the attack's steps)."""
    read = {g.attack: g.label for g in head.strong if g.attack != WORST}
    out = []
    for i in indicators:
        if (i["attack"] in read and i["model"] in (BASELINE, method) and i["status"] == "fired"
                and i["indicator"] in CAVEATS and i["n"] == head.n
                and (i["indicator"] == "doubling" or i["eps"] == head.eps)):  # fmt: skip
            who = "ERM" if i["model"] == BASELINE else METHODS[method].label
            line = f"{who}'s {read[i['attack']]} accuracy may be overstated: {CAVEATS[i['indicator']]}"
            if line not in out:
                out.append(line)
    return tuple(out)


def _setting(row: Row) -> str:
    info = ATTACKS[row["attack"]]
    words = [f"{row['steps']} steps"] if info.iterative else []
    if row.get("restarts", 1) != 1:
        words.append(f"{row['restarts']} restarts")
    if row.get("precision", "fp32") != "fp32":
        words.append(row["precision"])
    return ", ".join(words)


def _paired(erm: Any, other: Any) -> Any:
    if erm is None or other is None or len(erm) != len(other):
        return None
    from robustbench_mixup.measures.stats import paired_difference

    return paired_difference(erm, other)


def _gain(attack: str, at: dict[str, Row], method: str) -> Gain:
    erm, mix = at[BASELINE], at[method]
    label = ATTACKS[attack].label
    return Gain(attack, label, erm["top1"], mix["top1"], _paired(erm.get("correct"), mix.get("correct")), _setting(erm))


def _worst_gain(worst: Sequence[Row], eps: float, n: int, method: str) -> Gain | None:
    at = {w["model"]: w for w in worst if w["eps"] == eps and w["n"] == n}
    if BASELINE not in at or method not in at:
        return None
    erm, mix = at[BASELINE], at[method]
    over = ", ".join(ATTACKS[a].label if a in ATTACKS else a for a in erm["attacks"])
    return Gain(WORST, "worst case", erm["top1"], mix["top1"], _paired(erm.get("correct"), mix.get("correct")), over)


def gains_table(
    rows: Sequence[Row], worst: Sequence[Row], mode: str, *, method: str, source: str | None = None
) -> list[GainsAtEps]:
    """At each ε > 0 where native FGSM and at least one strong attack both ran on the same n examples (the
    largest such n), FGSM's paired gain beside each strong attack's and, in the white box, the worst case's."""
    keys = sorted({(r["eps"], r["n"]) for r in rows if r["attack"] == "fgsm" and r["mode"] == mode and r["eps"] > 0})
    out: dict[float, GainsAtEps] = {}
    for eps, n in keys:  # ascending n: a larger n at the same ε replaces a smaller one
        fgsm = paired_rows(rows, "fgsm", mode, eps, n, source=source, method=method)
        strong = {a: paired_rows(rows, a, mode, eps, n, source=source, method=method) for a in STRONG}
        gains = tuple(_gain(a, at, method) for a, at in strong.items() if at is not None)
        if fgsm is None or not gains:
            continue
        extra = _worst_gain(worst, eps, n, method) if mode == "white" else None
        out[eps] = GainsAtEps(eps, n, _gain("fgsm", fgsm, method), gains + ((extra,) if extra else ()))
    return [out[e] for e in sorted(out)]


def _points(x: float) -> str:
    return f"{100 * x:.1f}".replace("-0.0", "0.0")


def _interval(d: Any) -> str:
    return f"[{_points(d.lo)}, {_points(d.hi)}]"


def describe(fgsm: Gain, strong: Gain, *, method: str) -> str:
    """One strong attack's outcome, in words: "mixup's FGSM gain of 12.3 points shrinks to 1.2 under APGD-CE
    (interval [-0.4, 2.8] includes 0: vanishes)"."""
    who = METHODS[method].label
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
    return (f"{who}'s FGSM gain of {_points(fgsm.diff.diff)} points {moves} {where} "
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


def fgsm_claim_rows(rows: Sequence[Row], mode: str, claim_eps: float | None) -> tuple[float, dict[str, Row]] | None:
    """The ε the FGSM claim of `mode` reads (the claim's ε, else the nearest evaluated) on the largest n, and
    the native FGSM row per model there; None without such rows."""
    native = [r for r in rows if (r["attack"], r["mode"], r["backend"]) == ("fgsm", mode, "native") and r["eps"] > 0]
    if not native:
        return None
    n = max(r["n"] for r in native)
    eps = _nearest(sorted({r["eps"] for r in native if r["n"] == n}), claim_eps)
    return eps, {r["model"]: r for r in native if (r["eps"], r["n"]) == (eps, n)}


def strong_verdict(
    spec: ClaimSpec,
    rows: Sequence[Row],
    worst: Sequence[Row],
    claim_eps: float | None = None,
    *,
    method: str,
    indicators: Sequence[Row] = (),
) -> StrongVerdict:
    """Whether the FGSM claim `spec` about `method` survives a strong attack; see `strong_attack_verdicts`."""
    mode = FGSM_CLAIMS[spec.key]
    base = {"key": spec.key, "claim": spec.wording(method), "mode": mode, "method": method}
    label = METHODS[method].label
    found = fgsm_claim_rows(rows, mode, claim_eps)
    if found is None or BASELINE not in found[1] or method not in found[1]:
        grid = tuple(float(e) for e in ATTACKS["fgsm"].example_eps)
        sentence = f"FGSM has not been run on {BASELINE} and {method}"
        return StrongVerdict(**base, verdict="no FGSM result", sentence=sentence, needs=(AttackConfig("fgsm", grid),))
    claim_eps, at = found
    n = at[BASELINE]["n"]
    table = gains_table(rows, worst, mode, source=at[BASELINE]["source"] if mode == "black" else None, method=method)
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
    found_at = {"eps": head.eps, "n": head.n, "note": "; ".join(notes), "table": tuple(table),
                "fgsm_diff": head.fgsm.diff,
                "caveats": caveats(indicators, head, method) if mode == "white" else ()}  # fmt: skip
    paired = [g for g in head.strong if g.diff is not None]
    d = head.fgsm.diff
    if d is not None and d.lo <= 0:
        lies = "includes 0" if d.hi >= 0 else "lies below 0"
        sentence = f"{label} − ERM under FGSM is {_points(d.diff)} points, interval {_interval(d)} {lies}"
        if d.hi < 0:  # worse under FGSM itself: not merely untested (the claim's verdict is the claims table's)
            sentence += (f": {label} worse by {_points(-d.diff)} points under FGSM itself at ε = {head.eps:.4g}, so "
                         "there is no gain to test")  # fmt: skip
        return StrongVerdict(**base, verdict="no FGSM gain to test", sentence=sentence, **found_at)
    if d is None or not paired:
        which = "FGSM was" if d is None else "the strong attacks were"
        sentence = f"{which} stored without per-example outcomes: re-run to pair ERM and {label} on the same examples"
        needs = tuple(_rerun(rows, g.attack, mode, head.n) for g in unpaired if g.attack != WORST)
        return StrongVerdict(**base, verdict="not paired: re-run", sentence=sentence, needs=needs, **found_at)
    decisive = max(paired, key=lambda g: (SEVERITY[g.outcome], -g.diff.diff))
    sentence = describe(head.fgsm, decisive, method=method)
    by = "the worst case" if decisive.attack == WORST else decisive.label
    return StrongVerdict(**base, verdict=decisive.outcome, sentence=sentence, decided_by=by, **found_at)


def strong_attack_verdicts(
    rows: Sequence[Row],
    worst: Sequence[Row] = (),
    claim_eps: float | None = None,
    methods: Sequence[str] = (PAPER_METHOD,),
    indicators: Sequence[Row] = (),
) -> list[StrongVerdict]:
    """For each method of `methods` and each FGSM claim of `CLAIMS` (white and black box): does the method's
    FGSM gain survive a strong attack?

    `rows` are a run's stored `attack_results` rows with their per-example outcomes (`correct`, a bool tensor
    or None for rows stored before outcomes were kept); `worst` its `worst_case` rows. At each ε where native
    FGSM and at least one strong attack (PGD, APGD-CE, APGD-DLR) ran on the same examples, method − ERM top-1
    accuracy is taken under each, paired (`stats.paired_difference`), with the worst case in the white box.
    The headline is read at the FGSM claim's ε (`claim_eps`, else the nearest evaluated), or, when no strong attack ran
    there, at the largest ε where both did (the verdict's `note` says so); its rule is `STRONG_RULE`.
    Nothing is guessed: rows without outcomes give "not paired: re-run". `indicators` (stored indicator rows):
    a white-box verdict carries, as `caveats`, the fired indicators that say a strong attack it reads may
    overstate accuracy.
    """
    specs = [s for s in CLAIMS if s.key in FGSM_CLAIMS]
    return [strong_verdict(s, rows, worst, claim_eps, method=m, indicators=indicators) for m in methods
            for s in specs]  # fmt: skip
