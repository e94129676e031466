"""The plain-text tables and lines that the commands print."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from robustbench_mixup.settings.config import (
    ATTACKS,
)

if TYPE_CHECKING:  # typing only: importing evaluation would pull in torch
    from robustbench_mixup.stages.attack import Evaluation


def rounded(value: Any, digits: int = 6) -> Any:
    """`value` with every float rounded to `digits` significant digits (0.067, not 0.06699999999999995)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def as_json(obj: Any) -> str:
    import json

    return json.dumps(rounded(obj))


def attack_table(ev: Evaluation) -> str:
    cfg, attack = ev.spec, ev.attack
    what = ATTACKS[cfg.attack].label
    if ATTACKS[cfg.attack].iterative:
        size = ATTACKS[cfg.attack].default_step_size if cfg.step_size is None else f"{cfg.step_size:g}"
        what += f", {attack.steps} steps of {size}"
    n = next(iter(ev.clean.values()))["n"]
    black = f"; black box crafted on {ev.source}" if cfg.mode != "white" else ""
    lines = [f"{what} on run {ev.run} ({ev.dataset} test, n={n}{black}, backend {cfg.backend})"]
    cols = [(r.mode, r.eps) for r in ev.rows if r.model == "erm"]
    failed = [f for f in ev.flags if f.get("status", "failed") == "failed"]
    noise = [f for f in ev.flags if f.get("status") == "noise"]
    flagged = {(f["model"], f["mode"], f["eps"]) for f in failed if f["attack"] == cfg.attack}
    width = max(8, *(len(m) for m in ev.clean))
    header = f"{'model':<{width}} {'clean':>7}" + "".join(f" {f'{m} {e:.4g}':>12}" for m, e in cols)
    lines += [header]
    for model, clean in ev.clean.items():
        cells = {(r.mode, r.eps): r for r in ev.rows if r.model == model}
        line = f"{model:<{width}} {clean['top1']:>7.2%}"
        for key in cols:
            mark = "!" if (model, *key) in flagged else " "
            line += f" {cells[key].top1:>11.2%}{mark}"
        lines.append(line)
    lines.append("top-1 accuracy; 95% Wilson intervals, top-5 and errors are in reports/results.sqlite (or --json)")
    if failed:
        lines.append(f"WARNING: {len(failed)} sanity check(s) failed, significantly (marked !):")
        lines += [f"  - {f['check']}: {ATTACKS[f['attack']].label if f['attack'] in ATTACKS else f['attack']} "
                  f"{f['model']} {f['mode']} ε={f['eps']:g}: {f['detail']}" for f in failed]  # fmt: skip
    else:
        lines.append(
            "sanity checks: none failed (ε=0 = clean, monotone in ε, black ≥ white, strong ≤ I-FGSM ≤ FGSM, "
            "no break by a gradient-free attack that every gradient attack missed)"
        )
    if noise:
        lines.append(f"  ({len(noise)} ordering difference(s) within sampling noise: see the report)")
    fired = [i for i in ev.indicators if i.status == "fired"]
    if not ev.indicators and cfg.mode != "black":
        lines.append(f"attack-failure indicators: not measured (they read the native loop's trace; backend "
                     f"{cfg.backend})")  # fmt: skip
    if ev.indicators:
        from robustbench_mixup.attacks.indicators import INDICATORS

        if fired:
            lines.append(f"WARNING: {len(fired)} attack-failure indicator(s) fired:")
            lines += [f"  - {INDICATORS[i.name].label}: {i.model} ε={i.eps:g}: {i.detail}. {INDICATORS[i.name].advice}"
                      for i in fired]  # fmt: skip
        else:
            names = sorted({i.name for i in ev.indicators})
            lines.append(f"attack-failure indicators: none fired ({', '.join(names)})")
    return "\n".join(lines)


def diagnostics_table(rows: dict[str, dict[str, float]], eps: Sequence[float]) -> str:
    """The diagnostics as a plain-text table: one line per model."""
    width = max(8, *(len(m) for m in rows))
    noise = [f"noise {e:.3g}" for e in eps]
    head = (f"{'model':<{width}} {'clean':>7} {'ECE':>6} {'margin':>7} {'‖∇‖ med':>9} {'‖∇‖ p90':>9} {'<1e-6':>6} "
            f"{'=0':>6}")  # fmt: skip
    lines = [head + "".join(f" {h:>11}" for h in noise)]
    for model, r in rows.items():
        line = (f"{model:<{width}} {r['clean_acc']:>7.2%} {r['ece']:>6.3f} {r['median_margin']:>7.2f} "
                f"{r['grad_norm_median']:>9.2e} {r['grad_norm_p90']:>9.2e} {r['grad_underflow']:>6.1%} "
                f"{r['grad_zero']:>6.1%}")  # fmt: skip
        lines.append(line + "".join(f" {r[f'noise_acc@{e:g}']:>11.2%}" for e in eps))
    return "\n".join(lines)


def print_claims(claims: Sequence[Any]) -> None:
    """The claims as `robust-eval run` prints them: verdict, paired effect with its interval, where."""
    from robustbench_mixup.verdicts.claims import format_p, p_equals, seeds_statement
    from robustbench_mixup.verdicts.headline import in_words

    for c in claims:
        if c.effect is None:
            print(f"  {c.verdict:<14} {c.claim} ({c.note})")
            continue
        scale, fmt = (100, "{:+.2f}") if c.unit == "%" else (1, "{:+.3g}")
        e = c.effect
        effect = f"{fmt.format(scale * e.diff)} [{fmt.format(scale * e.lo)}, {fmt.format(scale * e.hi)}]"
        unit = " points" if c.unit == "%" else ""
        p = f"{p_equals(c.p_value)} (Holm {format_p(c.p_holm)})"
        print(f"  {c.verdict:<14} {c.claim}: {c.method} − ERM {effect}{unit} ({in_words(c)}), {p}; {c.where}"
              f"{'; ' + c.holds if c.holds else ''}")  # fmt: skip
    print(f"  {seeds_statement(claims)}")


def print_headline(lines: Sequence[str]) -> None:
    """The report's headline (`verdicts.headline`), wrapped for a terminal."""
    import textwrap

    if lines:
        print("what this report found:")
    for line in lines:
        print(textwrap.fill(line, width=110, initial_indent="  ", subsequent_indent="    "))
