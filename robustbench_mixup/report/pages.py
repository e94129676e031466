"""The HTML report of one run: built from the results database and the run's files alone.

Rendering never recomputes a measurement: numbers come from the database, figures are drawn from those
numbers (or read from the PNGs the stages wrote) and inlined as base64, so `reports/RUN/index.html` is
one self-contained file that opens offline. The Jinja2 template autoescapes every string.

Beside the paper's claims the report asks whether mixup's FGSM gain survives a strong attack
(`verdicts.strong.strong_attack_verdicts`, paired on the stored per-example outcomes), splits the ordering checks
into failures and differences within sampling noise, and tabulates the attack-failure indicators
(`indicators.INDICATORS`) per attack and model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from robustbench_mixup.report.figures import (
    _file_png,
    compare_figure,
    curve_figure,
    forest_figure,
    overlay_figure,
    robustness_figure,
    sweep_effects_figure,
    training_figure,
)
from robustbench_mixup.settings.commands import attack_command
from robustbench_mixup.settings.config import (
    ATTACKS,
    BASELINE,
    METHODS,
    SURROGATE,
    AttackSetting,
)
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.fsutil import atomic_write_text
from robustbench_mixup.settings.layout import Layout, check_run_name
from robustbench_mixup.store.database import read_stored
from robustbench_mixup.store.runs import resolve_run
from robustbench_mixup.verdicts import paper
from robustbench_mixup.verdicts.claims import (
    ALPHA,
    MARGIN,
    RULE,
    Claim,
    format_p,
    p_equals,
    paired_rows,
    probe_setting,
    seeds_statement,
    stage_setting_rows,
)
from robustbench_mixup.verdicts.evidence import Verdicts, _sweep_table, collect, judge_group, judge_run
from robustbench_mixup.verdicts.headline import (
    Health,
    claim_marks,
    comparison_headline,
    difference_words,
    headline,
    health,
    in_words,
)
from robustbench_mixup.verdicts.strong import STRONG, STRONG_RULE, WORST, Gain, StrongVerdict
from robustbench_mixup.verdicts.sweep_effects import sweep_effects, where_it_holds

# --- does the FGSM gain survive a strong attack? ------------------------------------------------------------


@dataclasses.dataclass
class StrongSection:
    """One `StrongVerdict` laid out for the report: a column per strong attack (and the worst case) it
    met, a row per ε, and the commands that would decide it."""

    verdict: StrongVerdict
    columns: list[str]  # labels
    rows: list[dict[str, Any]]  # eps, n, fgsm (Gain), cells (Gain | None per column), headline (bool)
    commands: list[str]


def strong_sections(data: dict[str, Any], verdicts: Sequence[StrongVerdict]) -> list[StrongSection]:
    """One run's strong-attack verdicts (already judged) as sections, with the commands their `needs` name."""
    n_test = data["dataset"].get("n_test")
    out = []
    for v in verdicts:
        met = {g.attack: g.label for at in v.table for g in at.strong}
        columns = [met[a] for a in (*STRONG, WORST) if a in met]  # the registry's order, the worst case last
        rows = []
        for at in v.table:
            by_label: dict[str, Gain] = {g.label: g for g in at.strong}
            rows.append({"eps": at.eps, "n": at.n, "fgsm": at.fgsm, "cells": [by_label.get(c) for c in columns],
                         "headline": at.eps == v.eps})  # fmt: skip
        commands = [
            attack_command(data["root"], data["run"], dataclasses.replace(c, n=None) if c.n == n_test else c)
            for c in v.needs
        ]
        out.append(StrongSection(v, columns, rows, commands))
    return out


# --- sanity checks and indicators of attack failure -------------------------------------------------------


# How each indicator's value compares with its threshold when it fires (indicators.measure); the paired ones
# fire only when the difference is also significant.
def _indicator_value(name: str, value: float) -> str:
    """Accuracy differences in points, the other indicators as shares in %."""
    from robustbench_mixup.attacks.indicators import INDICATORS

    info = INDICATORS.get(name)
    return f"{100 * value:+.1f} pts" if info is not None and info.difference else f"{100 * value:.1f}%"


def indicator_tables(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stored `attack_indicators` rows as one table per (attack, model, setting): a row per indicator with
    its label, meaning, threshold and, when it fired anywhere, its advice; a cell per ε."""
    from robustbench_mixup.attacks.indicators import INDICATORS  # torch: only once there are indicators to show

    def setting(r: Mapping[str, Any]) -> tuple:  # one table across ε: the identity less its ε-dependent step size
        s = AttackSetting.of(r)
        return (r["backend"], r["n"], s.steps, s.restarts, s.precision)

    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["attack"], r["model"], setting(r)), []).append(r)
    order = {a: i for i, a in enumerate(ATTACKS)}
    tables = []
    for (attack, model, (backend, n, steps, restarts, precision)), group in sorted(
        groups.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][1], repr(kv[0][2]))
    ):
        eps = sorted({r["eps"] for r in group})
        lines = []
        for name, info in INDICATORS.items():
            mine = {r["eps"]: r for r in group if r["indicator"] == name}
            if not mine:
                continue
            cells = []
            for e in eps:
                r = mine.get(e)
                cells.append(None if r is None else {"value": _indicator_value(name, r["value"]), "status": r["status"],
                                                     "p_value": r["p_value"], "detail": r["detail"]})  # fmt: skip
            threshold = next(iter(mine.values()))["threshold"]
            fires = f"fires at {info.fires} {_indicator_value(name, threshold).lstrip('+')}"
            if info.difference:
                fires += ", if significant"
            fired = any(r["status"] == "fired" for r in mine.values())
            lines.append({"name": name, "label": info.label, "meaning": info.meaning, "fires": fires,
                          "advice": info.advice if fired else "", "cells": cells})  # fmt: skip
        words = [f"{steps} steps" if ATTACKS.get(attack) and ATTACKS[attack].iterative else "",
                 f"{restarts} restarts" if restarts != 1 else "", precision, backend, f"n = {n}"]  # fmt: skip
        label = ATTACKS[attack].label if attack in ATTACKS else attack
        tables.append({"attack": label, "model": model, "setting": ", ".join(w for w in words if w), "eps": eps,
                       "rows": lines, "fired": sum(1 for r in group if r["status"] == "fired")})  # fmt: skip
    return tables


def robustness_rows(
    rows: Sequence[Mapping[str, Any]], worst: Sequence[Mapping[str, Any]], drawn: Sequence[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Attack rows in the registry's order (then mode, model, ε), each white-box row with the worst case of
    its (model, ε, n) beside it, and `drawn`: whether it is one of the rows the figure draws (the setting the
    claims read, `claims.stage_setting_rows`), or another setting, shown only here."""
    shown = {id(r) for r in drawn}
    at = {(w["model"], w["eps"], w["n"]): w for w in worst}
    order = {a: i for i, a in enumerate(ATTACKS)}
    out = []
    for r in sorted(rows, key=lambda r: (order.get(r["attack"], len(order)), r["mode"], r["model"], r["eps"],
                                         r["backend"], r["steps"])):  # fmt: skip
        info = ATTACKS.get(r["attack"])
        setting = [f"{r['steps']} steps"] if info is not None and info.iterative else []
        if r.get("restarts", 1) != 1:
            setting.append(f"{r['restarts']} restarts")
        if r.get("precision", "fp32") != "fp32":
            setting.append(r["precision"])
        w = at.get((r["model"], r["eps"], r["n"])) if r["mode"] == "white" else None
        out.append({**r, "label": info.label if info else r["attack"], "setting": ", ".join(setting), "worst": w,
                    "drawn": id(r) in shown})  # fmt: skip
    return out


DIAGNOSTICS_READING = (
    "How to read it: tiny gradients at confident points make single-step attacks optimistic. A large margin and a "
    "small median ‖∇‖ (many below 1e-6) mean the loss is flat where FGSM starts, so its one linear step is a poor "
    "guide to the loss ε away and an iterative attack (PGD) finds much more; a gradient that is exactly 0 gives a "
    "sign attack no direction at all, and there only an attack whose loss does not saturate (APGD-DLR) or a "
    "transfer attack can tell. Random sign noise of the same ε should hurt far less than any attack; an attack no "
    "stronger than random noise has failed."
)


def diagnostics_rows(data: dict[str, Any]) -> tuple[list[float], list[dict[str, Any]]]:
    """The diagnostics table of one run: its noise levels, and a row per method (in the run's order) with its
    setting, its stored diagnostics and, at each noise ε, its white-box FGSM and PGD accuracy where stored on
    the same n test examples."""
    stored = data["diagnostics"]
    if not stored:
        return [], []
    eps = sorted({float(k.split("@", 1)[1]) for r in stored.values() for k in r if k.startswith("noise_acc@")})
    rows = []
    for model in [m for m in data["methods"] if m in stored]:
        d = stored[model]
        attacks: dict[str, list[float | None]] = {}
        for attack in ("fgsm", "pgd"):
            evaluated = {r["eps"] for r in data["attack_rows"] if r["attack"] == attack and r["n"] == d["n"]}
            cells = []
            for e in eps:  # the strongest exact setting stored at that ε (claims.paired_rows' choice)
                x = next((x for x in evaluated if abs(x - e) < 1e-9), None)
                at = None if x is None else paired_rows(data["attack_rows"], attack, "white", x, d["n"], method=model)
                cells.append(None if at is None else at[model]["top1"])
            attacks[attack] = cells
        rows.append({"model": model, "setting": data["settings"][model], **d,
                     "noise": [d.get(f"noise_acc@{e:g}") for e in eps], **attacks})  # fmt: skip
    return eps, rows


def _env() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("robustbench_mixup.report", "templates"), autoescape=select_autoescape(["html", "j2"])
    )
    env.filters["pvalue"] = format_p
    env.filters["p_equals"] = p_equals
    env.filters["in_words"] = in_words
    env.filters["accuracy_words"] = lambda diff, method: difference_words("accuracy", method, diff)
    env.globals["method_labels"] = {k: m.label for k, m in METHODS.items()} | {"erm": "ERM"}
    return env


def claim_curves(claims: Sequence[Claim]) -> dict[str, tuple[Any, Any]]:
    """Each claim's effect-across-the-grid figure, by key, as (thumbnail, full figure); claims measured at one
    setting have none."""
    return {c.ident: (fig, curve_figure(c, full=True)) for c in claims
            if c.effect is not None and (fig := curve_figure(c)) is not None}  # fmt: skip


class Rendered(NamedTuple):
    """A written report, the verdicts it shows and its headline (what `run` and `report` print)."""

    path: Path
    verdicts: Verdicts
    headline: tuple[str, ...] = ()


def run_health(datas: Sequence[dict[str, Any]]) -> Health:
    """The sanity checks and indicators of one run, or of a group's runs together, as one `Health`."""
    indicators = [i for d in datas for i in d["indicators"]]
    return health([f for d in datas for f in d["flags"]], indicators, attacked=any(d["attack_rows"] for d in datas),
                  labels=_labels(indicators))  # fmt: skip


def _probe_png(layout: Layout, run: str, setting: tuple[str, str, int], rows: Sequence[Mapping[str, Any]]) -> Any:
    """The probe figure of `setting`; a figure written before the file name carried the pair count is taken only
    when that setting's pair count is the only one stored for its split (so it can be of no other)."""
    split, same, pairs = setting
    found = _file_png(layout.probe_figure(run, split, same, pairs))
    counts = {r["pairs"] for r in rows if (r["split"], r["same_class"]) == (split, same)}
    if found is None and counts == {pairs}:
        found = _file_png(layout.report_dir(run) / f"probe-{split}-{same}.png")
    return found


def _other_probes(rows: Sequence[Mapping[str, Any]], chosen: tuple[str, str, int] | None) -> list[str]:
    """The probe settings stored beside the one the claims read, in words: shown as extra lines, not drawn."""
    settings = sorted({(r["split"], r["same_class"], r["pairs"]) for r in rows} - {chosen})
    return [f"{pairs} {split} pairs ({same} same class)" for split, same, pairs in settings]


def _labels(indicators: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The attacks' labels, and the indicators' where one fired."""
    labels = {k: a.label for k, a in ATTACKS.items()}
    if any(i["status"] == "fired" for i in indicators):
        from robustbench_mixup.attacks.indicators import INDICATORS  # torch: only once an indicator fired

        labels |= {k: info.label for k, info in INDICATORS.items()}
    return labels


def build(out: str | Path = ".", run: str | None = None) -> Path:
    """Write `reports/RUN/index.html` for `run` (default: the latest), or, when `run` names a group of seeds,
    the group's pooled report (`build_group`); returns its path."""
    return render(out, run).path


def render(out: str | Path = ".", run: str | None = None) -> Rendered:
    """`build`, returning the verdicts it judged as well (what `robust-eval run` prints)."""
    layout = Layout(out)
    if run is not None:
        check_run_name(run)
        group = read_stored(layout.database, lambda db: db.get_group(run))
        if group is not None:
            return render_group(out, run, group)
    run, _ = resolve_run(out, run)
    return _write_run_report(layout, collect(out, run))


def _write_run_report(layout: Layout, data: dict[str, Any]) -> Rendered:
    """Render one run's collected results (`collect`) to `reports/RUN/index.html`, judged once (a group report
    reuses the verdicts)."""
    run, cfg = data["run"], data["record"]["config"]
    verdicts = judge_run(data)
    claims = verdicts.claims
    state = run_health([data])
    found = tuple(headline(claims, verdicts.strong[run], state))
    drawn = stage_setting_rows(data["attack_rows"], data["methods"])
    probe = probe_setting(data["probe_rows"], next((m for m in data["methods"] if m != BASELINE), BASELINE))
    figures = {
        "training": training_figure(data["epochs"], (*data["methods"], SURROGATE)) if data["epochs"] else None,
        "robustness": robustness_figure(drawn, data["worst_case"], data["methods"]) if drawn else None,
        "probe": _probe_png(layout, run, probe, data["probe_rows"]) if probe else None,  # the claims' setting
        "sweep": _file_png(layout.sweep_figure(run)),
    }  # fmt: skip
    html = _env().get_template("report.html.j2").render(
        run=run, cfg=cfg, data=data, claims=claims, rule=RULE, figures=figures, commands=data["commands"],
        claim_curves=claim_curves(claims), forest=forest_figure(claims), seeds_statement=seeds_statement(claims),
        alpha=ALPHA, attacks=ATTACKS, strong=strong_sections(data, verdicts.strong[run]), strong_rule=STRONG_RULE,
        indicators=indicator_tables(data["indicators"]) if data["indicators"] else [],
        robustness=robustness_rows(data["attack_rows"], data["worst_case"], drawn),
        diagnostics=diagnostics_rows(data), diagnostics_reading=DIAGNOSTICS_READING,
        sweep_rows=_sweep_table(data), paper=paper, environment=data["record"]["environment"],
        probe_setting=probe, probe_others=_other_probes(data["probe_rows"], probe),
        headline=found, health=state, marks=claim_marks(claims, data["indicators"], _labels(data["indicators"])),
    )  # fmt: skip
    path = layout.report(run)
    atomic_write_text(path, html)
    return Rendered(path, verdicts, found)


def build_group(out: str | Path, group: str, runs: Sequence[str]) -> Path:
    """`render_group`'s path."""
    return render_group(out, group, runs).path


def render_group(
    out: str | Path, group: str, runs: Sequence[str], judged: Mapping[str, Verdicts] | None = None
) -> Rendered:
    """Write `reports/GROUP/index.html`: the claims pooled over the group's seeds (a run whose training has not
    finished is left out, and the report says which), each seed's effects, and each seed's strong-attack verdicts.
    `judged`: the verdicts of runs whose own report was just rendered (by `run`), which are not judged again."""
    layout = Layout(out)
    records = read_stored(layout.database, lambda db: {r: db.get_run(r) for r in runs}) or {}
    # a run still training (or never trained) is not pooled: its numbers may change
    trained = [r for r in runs if records.get(r) is not None and records[r]["status"] == "done"]
    if not trained:
        raise UsageError(f"group {group!r} has no trained run yet ({', '.join(runs)}): run it with its --seeds")
    datas = [collect(out, resolve_run(out, r)[0]) for r in trained]
    # the group report links to each run's own report: (re)built from the same collected results, unless just built
    judged = judged or {}
    seeds = [judged[d["run"]] if d["run"] in judged else _write_run_report(layout, d).verdicts for d in datas]
    per_seed = {v.name: {c.ident: c for c in v.claims} for v in seeds}
    verdicts = judge_group(group, datas, seeds)
    claims = verdicts.claims
    state = run_health(datas)
    found = tuple(headline(claims, [v for vs in verdicts.strong.values() for v in vs], state))
    html = _env().get_template("group.html.j2").render(
        group=group, runs=list(runs), trained=trained, datas=datas, claims=claims, per_seed=per_seed, rule=RULE,
        claim_curves=claim_curves(claims), forest=forest_figure(claims), seeds_statement=seeds_statement(claims),
        alpha=ALPHA, strong={d["run"]: strong_sections(d, verdicts.strong[d["run"]]) for d in datas},
        strong_rule=STRONG_RULE, paper=paper,
        cfg=datas[0]["record"]["config"], members=[*datas[0]["methods"], SURROGATE], headline=found, health=state,
        marks={},  # the pooled claims read every seed's attacks: each seed's report marks its own
    )  # fmt: skip
    path = layout.report(group)
    atomic_write_text(path, html)
    return Rendered(path, verdicts, found)


# --- comparison of several runs -------------------------------------------------------------------


def seed_groups(datas: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs whose settings differ only in the seed: mean and spread of their clean accuracies."""
    import statistics

    groups: dict[str, list[str]] = {}
    for run, data in datas.items():
        setting = {k: v for k, v in data["record"]["config"].items() if k != "seed"}
        groups.setdefault(json.dumps(setting, sort_keys=True), []).append(run)
    out = []
    for setting, runs in groups.items():
        if len(runs) < 2:
            continue
        row: dict[str, Any] = {"runs": runs, "setting": json.loads(setting)}
        for model in (*METHODS, SURROGATE):
            accs = [100 * datas[r]["final"][model]["test_acc"] for r in runs if model in datas[r]["final"]]
            row[model] = (statistics.fmean(accs), statistics.stdev(accs)) if len(accs) > 1 else None
        out.append(row)
    return out


def build_comparison(out: str | Path, runs: list[str]) -> Path:
    """`render_comparison`'s path."""
    return render_comparison(out, runs)[0]


def render_comparison(out: str | Path, runs: list[str]) -> tuple[Path, tuple[str, ...]]:
    """Write one report comparing `runs` side by side; returns its path and its headline."""
    layout = Layout(out)
    if len(runs) < 2 or len(set(runs)) != len(runs):
        raise UsageError(f"--compare needs at least two different runs, got {runs}")
    names = [resolve_run(out, r)[0] for r in runs]
    datas = {name: collect(out, name) for name in names}
    judged = {name: judge_run(datas[name]) for name in names}
    claims = {name: {c.ident: c for c in judged[name].claims} for name in names}
    claim_rows = list({c.ident: c.claim for name in names for c in judged[name].claims}.items())
    sections = {name: strong_sections(datas[name], judged[name].strong[name]) for name in names}
    strong = {name: {f"{s.verdict.key}-{s.verdict.method}": s for s in sections[name]} for name in names}
    strong_rows = list({k: s.verdict.claim for name in names for k, s in strong[name].items()}.items())
    members = [m for m in (*METHODS, SURROGATE) if any(m in d["final"] for d in datas.values())]
    datasets = sorted({d["record"]["config"]["dataset"] for d in datas.values()})
    configs = [datas[n]["record"]["config"] for n in names]
    differs = sorted({k for c in configs for k in c if any(o.get(k) != c.get(k) for o in configs)})
    states = {name: run_health([datas[name]]) for name in names}
    found = tuple(comparison_headline({n: judged[n].claims for n in names}, states, datasets=datasets))
    html = _env().get_template("compare.html.j2").render(
        runs=names, datas=datas, claims=claims, rule=RULE, paper=paper, datasets=datasets, differs=differs,
        claim_rows=claim_rows, strong_rows=strong_rows, members=members,
        forest=compare_figure(names, {n: v.claims for n, v in judged.items()}),
        strong=strong, strong_rule=STRONG_RULE,
        overlay=overlay_figure(datas), groups=seed_groups(datas),
        sweeps={n: _sweep_table(datas[n]) for n in names}, headline=found, health=states,
    )  # fmt: skip
    tag = "-vs-".join(names)
    if len(tag) > 80:
        tag = f"{names[0]}-and-{len(names) - 1}-more-{hashlib.sha256(tag.encode()).hexdigest()[:8]}"
    path = layout.comparison(tag)
    atomic_write_text(path, html)
    return path, found


# --- the robustness sweep -------------------------------------------------------------------------


def build_robust_sweep(out: str | Path, name: str) -> tuple[Path, list[str]]:
    """Write `reports/sweeps/NAME/index.html` for robustness sweep `name` from the database alone: the
    sentences saying where the claim holds and where it flips, the effects against α, and every cell.
    Returns its path and the sentences."""
    layout = Layout(out)
    stored = read_stored(layout.database, lambda db: (db.get_sweep(name), db.robust_rows(name)))
    if stored is None or stored[0] is None or stored[0]["kind"] != "robust":
        raise UsageError(f"no robustness sweep named {name!r} under {str(layout.root)!r}")
    sweep, rows = stored
    effects = sweep_effects(rows)
    sentences = where_it_holds(effects)
    cells = sorted({(r["alpha"], r["epochs"], r["seed"]) for r in rows})
    html = _env().get_template("robust.html.j2").render(
        name=name, cfg=sweep["config"], effects=effects, sentences=sentences, cells=len(cells),
        effects_figure=sweep_effects_figure(effects), alpha=ALPHA, margin=MARGIN, attacks=ATTACKS, methods=METHODS,
    )  # fmt: skip
    path = layout.sweep_report(name)
    atomic_write_text(path, html)
    return path, sentences
