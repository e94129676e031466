"""Where a claim holds over a robustness sweep: each cell (attack, ε, epochs, α) judged as a group of
seeds, method − ERM, Holm over every cell."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from robustbench_mixup.settings.config import (
    ATTACKS,
    BASELINE,
    METHODS,
)
from robustbench_mixup.verdicts.claims import ALPHA, MARGIN, Direction, Row, claim_p, side


@dataclass(frozen=True)
class SweepEffect:
    """method − ERM at one (attack, ε, epochs, α) of a robustness sweep, pooled over its seeds. A method whose
    parameter is not α (label smoothing) is the same model in every α cell: it is judged once, `alpha` None."""

    method: str
    attack: str  # 'clean' or a key of ATTACKS (white box)
    eps: float
    epochs: int
    alpha: float | None
    effect: Any  # stats.Effect of the error (clean: of the accuracy)
    verdict: str  # reproduced | contradicted | inconclusive, after Holm over every comparison of the sweep
    p_value: float
    p_holm: float = 1.0

    @property
    def direction(self) -> Direction:
        return "no_worse" if self.attack == "clean" else "lower"


def sweep_effects(rows: Sequence[Row]) -> list[SweepEffect]:
    """From a robustness sweep's stored outcomes (`ResultsDB.robust_rows`): for every method other than ERM and
    every (attack, ε, epochs, α), the paired difference in error under the attack (for 'clean', in accuracy)
    pooled over the seeds, as the claims pool a group (the same test examples for every seed: crossed). The
    claim read is the paper's: the method lowers the attack's error (clean accuracy no worse, by `MARGIN`);
    reproduced or contradicted needs p < ALPHA after Holm over every comparison."""
    import dataclasses

    from robustbench_mixup.measures.stats import holm, pooled_effect

    by: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        by.setdefault((r["attack"], r["eps"], r["epochs"], r["alpha"], r["seed"]), {})[r["model"]] = r["correct"]
    methods = [m for m in METHODS if m != BASELINE and any(m in v for v in by.values())]
    first_alpha = min((k[3] for k in by), default=None)
    effects = []
    for attack, eps, epochs, alpha in sorted({k[:4] for k in by}, key=lambda k: (k[0] != "clean", k)):
        for method in methods:
            per_alpha = METHODS[method].beta
            if not per_alpha and alpha != first_alpha:
                continue  # the same models in every α cell: judged once
            seeds = [v for k, v in sorted(by.items()) if k[:4] == (attack, eps, epochs, alpha)
                     and BASELINE in v and method in v]  # fmt: skip
            if not seeds:
                continue
            x = SweepEffect(method, attack, eps, epochs, alpha if per_alpha else None, None, "", 0.0)
            pairs = [(v[BASELINE], v[method]) if attack == "clean" else (~v[BASELINE], ~v[method]) for v in seeds]
            e = pooled_effect(pairs, shared_units=len(pairs) > 1)
            verdict = {"claimed": "reproduced", "other": "contradicted"}.get(side(e, x.direction), "inconclusive")
            effects.append(dataclasses.replace(x, effect=e, verdict=verdict, p_value=claim_p(e, x.direction)))
    adjusted = holm([x.p_value for x in effects]) if effects else []
    return [dataclasses.replace(x, verdict=x.verdict if adj < ALPHA else "inconclusive", p_holm=adj)
            for x, adj in zip(effects, adjusted, strict=True)]  # fmt: skip


def where_it_holds(effects: Sequence[SweepEffect]) -> list[str]:
    """The sweep in words: per method, attack, ε and epochs, the α where the paper's claim holds, where it
    flips (significantly the other way) and where the data cannot tell; then what the intervals cover."""
    lines = []
    groups: dict[tuple, list[SweepEffect]] = {}
    for x in effects:
        groups.setdefault((x.method, x.attack, x.eps, x.epochs), []).append(x)
    order = {m: i for i, m in enumerate(METHODS)}
    for (method, attack, eps, epochs), xs in sorted(
        groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1] != "clean", kv[0][1], kv[0][2], kv[0][3])
    ):
        label = METHODS[method].label
        if attack == "clean":
            what = f"{label}'s clean accuracy is no worse than ERM's (by at most {100 * MARGIN:g} point)"
        else:
            what = f"{label} lowers white-box {ATTACKS[attack].label} error at ε = {eps:.4g}"
        words = {"reproduced": "holds", "contradicted": "flips (significantly the other way)",
                 "inconclusive": "is undecided"}  # fmt: skip
        if xs[0].alpha is None:  # one judgement: its parameter is not α
            lines.append(f"After {epochs} epochs, '{what}' {words[xs[0].verdict]} (α does not apply).")
            continue
        parts = []
        for verdict, word in words.items():
            at = ", ".join(f"{x.alpha:g}" for x in xs if x.verdict == verdict)
            if at:
                parts.append(f"{word} at α = {at}")
        lines.append(f"After {epochs} epochs, '{what}' " + "; ".join(parts) + ".")
    seeds = {x.effect.seeds for x in effects}
    if seeds == {1}:
        lines.append("1 seed: the intervals cover test-sample variation only, not seed-to-seed variation "
                     "(give --seeds 0 1 2).")  # fmt: skip
    elif seeds:
        lines.append(f"{min(seeds)} seeds per cell: the intervals cover seed-to-seed and test-sample variation.")
    return lines
