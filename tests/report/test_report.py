import dataclasses
import re
import shutil
import sqlite3
from pathlib import Path
from statistics import NormalDist

import pytest
from helpers import assert_one_line_error, run_cli

from robustbench_mixup import stats
from robustbench_mixup.attacks.indicators import INDICATORS
from robustbench_mixup.report.figures import draw_probe, draw_sweep
from robustbench_mixup.report.pages import build
from robustbench_mixup.report.theme import MIN_TEXT_PX
from robustbench_mixup.settings.config import (
    ATTACKS,
    CLAIM_EPS,
    AttackConfig,
    DiagnoseConfig,
    ProbeConfig,
    TrainConfig,
)
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.settings.sweeps import SweepConfig
from robustbench_mixup.stages.attack import evaluate_run
from robustbench_mixup.stages.diagnose import diagnose_run
from robustbench_mixup.stages.probe import probe_run
from robustbench_mixup.stages.sweep_corrupt import run_sweep
from robustbench_mixup.stages.train import train_run
from robustbench_mixup.store.database import ResultsDB
from robustbench_mixup.verdicts.claims import CLAIMS
from robustbench_mixup.verdicts.evidence import collect
from robustbench_mixup.verdicts.strong import FGSM_CLAIMS, strong_attack_verdicts

HOSTILE = "<script>alert('x')</script>"
CFG = TrainConfig(dataset="digits", model="mlp", epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A digits run with every stage done, and a hostile string in its recorded command line."""
    out = tmp_path_factory.mktemp("report")
    train_run(CFG, run="r", out=out, device="cpu", argv=["robust-eval", "train", "--data-root", HOSTILE])
    evaluate_run(AttackConfig(attack="fgsm", eps=(0.0, 0.05, 0.1)), out=out, run="r", device="cpu")
    evaluate_run(AttackConfig(attack="ifgsm", eps=(0.0, 0.05, 0.1), steps=3), out=out, run="r", device="cpu")
    evaluate_run(AttackConfig(attack="pgd", eps=(0.05, 0.1), steps=3), out=out, run="r", device="cpu")
    evaluate_run(AttackConfig(attack="apgd-ce", eps=(0.1,), steps=3), out=out, run="r", device="cpu")
    probe = probe_run(ProbeConfig(pairs=200, lambdas=5, resamples=200), out=out, run="r", device="cpu")
    draw_probe(Layout(out), probe)  # as the probe command and the pipeline do
    diagnose_run(DiagnoseConfig(eps=(0.05, 0.1)), out=out, run="r", device="cpu")
    sweep = SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0, 4.0), epochs=2, batch_size=64)
    draw_sweep(Layout(out), run_sweep(sweep, name="r", out=out, device="cpu"))
    return out, build(out=out, run="r").read_text()


def test_every_section_is_there_with_its_figure_inline(full):
    _, html = full
    for section in ("summary", "headline", "health", "claims", "strong", "training", "robustness", "diagnostics",
                    "indicators", "probe", "memorization", "provenance"):  # fmt: skip
        assert f'id="{section}"' in html
    for fig in ("fig-training", "fig-robustness", "fig-probe", "fig-sweep"):
        assert re.search(rf'id="{fig}" alt="[^"]+" src="data:image/png;base64,', html), fig
    assert "Not run yet" not in html and "not measured" not in html


def test_the_report_is_self_contained(full):
    _, html = full
    assert re.findall(r'(?:src|href)\s*=\s*"(?!data:|#)[^"]*"', html) == []  # nothing fetched from anywhere
    assert "<script" not in html.lower().replace("&lt;script", "")


def test_claims_table_has_one_row_per_claim_with_a_verdict(full):
    _, html = full
    table = html[html.index('<table id="claims-table">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r'<tr id="claim-([a-z_]+)">(.*?)</tr>', table, re.S)
    assert [key for key, _ in rows] == [s.key for s in CLAIMS]
    verdicts = re.findall(r'class="v-[a-z]+">([a-z ]+)<', table)
    assert len(verdicts) == 7
    assert dict(zip([key for key, _ in rows], verdicts, strict=True)) == _derived_claim_verdicts(full[0])
    for _, row in rows:  # each claim as a paired effect with its interval and both p-values
        assert re.search(r"<strong>[+-]\d[\d.]*</strong> \[[+-][\d.]+, [+-][\d.]+\]", row), row
        assert re.search(r'<td class="nowrap">(&lt; )?[\d.e-]+ · (&lt; )?[\d.e-]+</td>', row), row
        assert re.search(r'<span class="words[^"]*">mixup (better|worse|higher|lower) by [\d.]+( points)?</span>|'
                         r"mixup and ERM equal", row), row  # fmt: skip
    assert "Rule: Each claim is judged on the paired difference" in html
    assert "1 seed: the intervals cover test-sample variation only" in html
    assert re.search(r'id="fig-forest" alt="[^"]+" src="data:image/png;base64,', html)


# --- the verdicts the stored outcomes imply, derived by the documented rules with the public statistics -----------


def _at_claim_eps(rows, attack, mode):
    """ERM's and mixup's per-example outcomes (`correct`) under `attack` in `mode` at the digits claims' ε, which
    the fixture evaluated once (one n, one black-box source)."""
    at = [r for r in rows if (r["attack"], r["mode"], r["eps"]) == (attack, mode, CLAIM_EPS["digits"])]
    assert sorted(r["model"] for r in at) == ["erm", "mixup"], (attack, mode)
    return {r["model"]: r["correct"] for r in at}


def _side(effect, direction):
    """Where the 95% interval lies (docs/statistics.md): "no worse" against −1 point, the others against 0."""
    bound = -0.01 if direction == "no_worse" else 0.0
    below, above = effect.hi < bound, effect.lo > bound
    if direction == "lower":
        return "claimed" if below else "other" if above else "neither"
    return "claimed" if above else "other" if below else "neither"


def _p(effect, direction):
    """The claim's two-sided p: its own test's; for "no worse", against −1 point from the interval's normal SE."""
    if direction != "no_worse":
        return effect.p_value
    se = (effect.hi - effect.lo) / (2 * NormalDist().inv_cdf(0.975))
    return 2 * NormalDist().cdf(-abs(effect.diff + 0.01) / se)


def _derived_claim_verdicts(out):
    """Each claim's verdict by the rule of docs/statistics.md, from the run's stored per-unit outcomes with the
    public statistics (stats.paired_difference on right/wrong outcomes, stats.paired_mean_difference on gradient
    norms, stats.holm): reproduced/contradicted by the interval's side, "at every λ" as an intersection-union test
    (contradicted where a λ goes the other way after Holm over the λ), then Holm over the 7 claims at 5%."""
    with ResultsDB(Layout(out).database) as db:
        attacks = db.attack_rows("r", outcomes=True)
        probes = db.probe_rows("r", outcomes=True)
        clean = {r["model"]: r["correct"] for r in db.clean_rows("r") if r["split"] == "test"}
        jobs = db.sweep_jobs("r")
    assert {(r["split"], r["same_class"]) for r in probes} == {("train", "exclude")}  # training pairs, 2 classes
    assert sorted((j["noise"], j["alpha"], j["dropout"]) for j in jobs) == [(0.5, 0.0, 0.0), (0.5, 4.0, 0.0)]

    def error(attack, mode):  # error = not correct
        at = _at_claim_eps(attacks, attack, mode)
        return [stats.paired_difference(~at["erm"], ~at["mixup"])]

    def every_lam(column, paired):
        at = {(r["model"], r["lam"]): r[column] for r in probes if 0 < r["lam"] < 1}
        return [paired(at["erm", lam], at["mixup", lam]) for lam in sorted({lam for _, lam in at})]

    fit = {j["alpha"]: j["corrupted_fit"] for j in jobs}  # ERM is α = 0; mixup's largest α is 4
    measured = {  # claim: (direction, its effect at each point; one point unless "at every λ")
        "fgsm_white": ("lower", error("fgsm", "white")),
        "fgsm_black": ("lower", error("fgsm", "black")),
        "ifgsm_black": ("lower", error("ifgsm", "black")),
        "probe_miss_rate": ("lower", every_lam("missed", stats.paired_difference)),
        "probe_grad_norm": ("lower", every_lam("norms", stats.paired_mean_difference)),
        "memorization": ("higher", [stats.paired_difference(~fit[0.0], ~fit[4.0])]),
        "clean_accuracy": ("no_worse", [stats.paired_difference(clean["erm"], clean["mixup"])]),
    }
    assert list(measured) == [spec.key for spec in CLAIMS]
    verdicts, p_values = {}, {}
    for key, (direction, effects) in measured.items():
        sides = [_side(e, direction) for e in effects]
        ps = [_p(e, direction) for e in effects]
        against = [adj for adj, where in zip(stats.holm(ps), sides, strict=True) if where == "other" and adj < 0.05]
        if all(where == "claimed" for where in sides):
            verdicts[key], p_values[key] = "reproduced", max(ps)  # the weakest point decides
        elif against:
            verdicts[key], p_values[key] = "contradicted", min(against)
        else:
            verdicts[key], p_values[key] = "inconclusive", max(ps)
    for key, adjusted in zip(measured, stats.holm([p_values[k] for k in measured]), strict=True):
        if adjusted >= 0.05:
            verdicts[key] = "inconclusive"
    return verdicts


def _derived_strong_verdict(out, mode):
    """Does mixup's FGSM gain survive a strong attack (docs/attacks.md, `strong.STRONG_RULE`)? From the stored
    per-example outcomes at the FGSM claim's ε: no gain to test unless mixup − ERM top-1 accuracy under FGSM has
    its interval above 0; else each strong attack's (and, white box, the worst case's) paired gain survives (above
    0), vanishes (includes 0) or reverses (below 0), and the most severe decides."""
    rows, worst, _ = _stored(out)

    def gain(at):
        return stats.paired_difference(at["erm"], at["mixup"])

    if gain(_at_claim_eps(rows, "fgsm", mode)).lo <= 0:
        return "no FGSM gain to test"
    strong = sorted({r["attack"] for r in rows if ATTACKS[r["attack"]].strong})
    gains = [gain(_at_claim_eps(rows, attack, mode)) for attack in strong]
    if mode == "white":
        gains.append(gain({w["model"]: w["correct"] for w in worst if w["eps"] == CLAIM_EPS["digits"]}))
    outcomes = {"survives" if g.lo > 0 else "reverses" if g.hi < 0 else "vanishes" for g in gains}
    return next(o for o in ("reverses", "vanishes", "survives") if o in outcomes)


def test_the_diagnostics_sit_beside_the_attacks_at_the_same_eps(full):
    out, html = full
    table = html[html.index('<table id="diagnostics-table">') :]
    table = table[: table.index("</table>")]
    stored = collect(out, "r")
    rows = re.findall(r"<tr><td class=\"l\">(erm|mixup)</td>(.*?)</tr>", table, re.S)
    assert [m for m, _ in rows] == ["erm", "mixup"]
    for model, row in rows:
        cells = re.findall(r"<td>([^<]*)</td>", row)
        d = stored["diagnostics"][model]
        assert cells[:2] == [f"{100 * d['clean_acc']:.2f}", f"{d['ece']:.3f}"]
        fgsm = {r["eps"]: r["top1"] for r in stored["attack_rows"]
                if (r["attack"], r["mode"], r["model"]) == ("fgsm", "white", model)}  # fmt: skip
        # per ε: random noise, FGSM, PGD (both run at 0.05 and 0.1 on every test example)
        assert cells[7:] == [f"{100 * v:.1f}" for e in (0.05, 0.1)
                             for v in (d[f"noise_acc@{e:g}"], fgsm[e], _top1(stored, "pgd", model, e))]  # fmt: skip
        assert d["clean_acc"] == stored["final"][model]["test_acc"]  # the same test points as training's
    assert "tiny gradients" in html.lower() or "tiny at confident" in html


def _top1(stored, attack, model, eps):
    return next(r["top1"] for r in stored["attack_rows"]
                if (r["attack"], r["mode"], r["model"], r["eps"]) == (attack, "white", model, eps))  # fmt: skip


def test_user_strings_are_escaped(full):
    _, html = full
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


@pytest.fixture(scope="module")
def trained_only(tmp_path_factory):
    """CFG trained as run 'a' and nothing else, once: the tests below copy it rather than train it again."""
    out = tmp_path_factory.mktemp("trained")
    train_run(CFG, run="a", out=out, device="cpu")
    return out


@pytest.fixture
def bare(trained_only, tmp_path):
    """An output root of its own holding run 'a', trained and nothing else."""
    shutil.copytree(trained_only, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_a_run_with_missing_stages_says_what_fills_them(bare, capsys):
    code, stdout, err = run_cli(capsys, "report", "--out", str(bare))
    assert code == 0, err
    html = (bare / "reports" / "a" / "index.html").read_text()
    assert stdout.strip().endswith("reports/a/index.html") and "report: file://" in stdout
    assert html.count("Not run yet") == 4
    for command in (
        "robust-eval diagnose --run a ",
        "robust-eval fgsm --eps",
        "robust-eval probe --run a ",
        "robust-eval sweep corrupt --dataset digits",
    ):
        assert command in html
    claims = _section(html, '<table id="claims-table">')
    assert claims.count("not measured") == 6  # every claim but clean accuracy needs a later stage
    assert "6 claim(s) not measured" in _section(html, 'id="headline"', "</div>")


def test_report_bad_input(capsys, tmp_path, bare):
    code, _, err = run_cli(capsys, "report", "--out", str(tmp_path / "empty"))
    assert_one_line_error(code, err, "no trained run", "robust-eval train")
    code, _, err = run_cli(capsys, "report", "--run", "nope", "--out", str(bare))
    assert_one_line_error(code, err, "unknown run 'nope'")


def test_the_report_renders_in_headless_chromium(full, tmp_path):
    """No console error, no network request, no script run; the claims table and every figure visible."""
    import os
    import shutil
    from pathlib import Path

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists() or __import__("importlib").util.find_spec("playwright") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium and playwright (.ci/run installs them)")
        pytest.skip("needs Debian's chromium and the playwright package")
    from playwright.sync_api import sync_playwright

    out, _ = full
    url = (out / "reports" / "r" / "index.html").resolve().as_uri()
    errors, requests, dialogs = [], [], []
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        page.wait_for_load_state("load")
        assert page.locator("#claims-table").is_visible()
        assert page.locator("#claims-table tr").count() == 8
        for fig in ("fig-training", "fig-robustness", "fig-probe", "fig-sweep"):
            img = page.locator(f"#{fig}")
            img.scroll_into_view_if_needed()
            assert img.is_visible() and img.evaluate("e => e.complete && e.naturalWidth > 100"), fig
        assert HOSTILE in page.locator("#provenance-table").inner_text()  # shown as text, not run
        # every figure's smallest text, as shown at a 1,400-px page width, is at least 10 px high; only the
        # claims table's thumbnails are smaller, and each links to its full figure on the page
        figures = page.evaluate("""() => [...document.querySelectorAll('img')].map(i => ({
            id: i.id, thumb: i.classList.contains('curve'), px: i.dataset.textPx ? +i.dataset.textPx : null,
            shown: i.getBoundingClientRect().width, natural: i.naturalWidth,
            full: i.closest('a') ? i.closest('a').getAttribute('href') : null}))""")  # fmt: skip
        assert len([f for f in figures if not f["thumb"]]) >= 6, figures
        for f in figures:
            if f["thumb"]:
                assert f["full"] and page.locator(f["full"]).count() == 1, f
                continue
            assert f["px"] is not None, f  # the figure says how small its text is
            assert f["px"] * f["shown"] / f["natural"] >= MIN_TEXT_PX, f
        # and nothing is wider than the page
        wide = page.evaluate("""() => { const w = document.documentElement.clientWidth;
            return [document.documentElement.scrollWidth - w, [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > w + 0.5).map(e => e.tagName + '#' + e.id)]; }""")
        assert wide == [0, []], wide
        shot = tmp_path / "report.png"
        page.set_viewport_size({"width": 1400, "height": 1400})
        page.goto(url)
        page.screenshot(path=str(shot))
        browser.close()
    assert errors == [] and dialogs == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert shot.stat().st_size > 20_000


def test_comparison_report_side_by_side_with_seed_means(bare, capsys):
    tmp_path = bare  # run 'a' is CFG at seed 0; 's1' the same setting at seed 1
    train_run(dataclasses.replace(CFG, seed=1), run="s1", out=tmp_path, device="cpu")
    evaluate_run(AttackConfig(attack="fgsm", eps=(0.0, 0.1)), out=tmp_path, run="a", device="cpu")
    code, stdout, err = run_cli(capsys, "report", "--compare", "a", "s1", "--out", str(tmp_path))
    assert code == 0, err
    path = _report_path(stdout)
    assert str(path).endswith("compare-a-vs-s1/index.html")
    html = path.read_text()
    assert 'id="seed-groups"' in html and "a, s1" in html  # the two seeds of one setting: mean ± std
    assert re.search(r"\d+\.\d\d ± \d+\.\d\d", html[html.index('id="seed-groups"') :])
    assert 'id="fig-overlay"' in html and 'id="dataset-warning"' not in html
    assert html.count("not measured") >= 6  # s1 has no attacks yet
    head = _section(html, 'id="headline"', "</div>")
    assert "Measured in one run only" in head and "(a: " in head  # the FGSM claims: s1 has no attacks
    assert 'id="health-table"' in html and 'class="l health h-none">no attack stored' in html  # s1's row


def test_comparing_runs_on_different_datasets_warns(bare, capsys):
    tmp_path = bare
    train_run(TrainConfig(dataset="mnist-5k", model="mlp", epochs=1), run="b", out=tmp_path, device="cpu")
    code, stdout, err = run_cli(capsys, "report", "--compare", "a", "b", "--out", str(tmp_path))
    assert code == 0, err
    html = _report_path(stdout).read_text()
    assert 'id="dataset-warning"' in html
    assert "the runs use different datasets (digits, mnist-5k)" in _section(html, 'id="headline"', "</div>")


def test_compare_needs_two_runs(bare, capsys):
    tmp_path = bare
    code, _, err = run_cli(capsys, "report", "--compare", "a", "--out", str(tmp_path))
    assert_one_line_error(code, err, "--compare needs at least two different runs")
    code, _, err = run_cli(capsys, "report", "--compare", "a", "zzz", "--out", str(tmp_path))
    assert_one_line_error(code, err, "unknown run 'zzz'")


# --- strong attacks: the FGSM gain, the worst case, the checks and the indicators --------------------------


def _report_path(stdout: str) -> Path:
    """The report a `report` command wrote: its last line, "report: file:///...", as a path."""
    from urllib.parse import unquote, urlparse

    last = stdout.strip().splitlines()[-1]
    assert last.startswith("report: file://"), stdout
    return Path(unquote(urlparse(last.removeprefix("report: ")).path))


def _section(html: str, start: str, end: str = "</table>") -> str:
    part = html[html.index(start) :]
    return part[: part.index(end)]


def _stored(out):
    with ResultsDB(Layout(out).database) as db:
        return db.attack_rows("r", outcomes=True), db.worst_case("r"), db.indicators("r")


def test_the_fgsm_gain_is_set_beside_every_strong_attack_and_the_worst_case(full):
    out, html = full
    rows, worst, _ = _stored(out)
    verdicts = strong_attack_verdicts(rows, worst)
    headline = _section(html, '<table id="strong-table">')
    cells = re.findall(r"<tr><td class=\"l\">(.*?)</td>.*?<span class=\"[^\"]*\">([^<]+)</span>", headline, re.S)
    assert [(c, w) for c, w in cells] == [(v.claim, v.verdict) for v in verdicts]
    claims = {spec.key: spec.wording("mixup") for spec in CLAIMS}
    assert cells == [(claims[key], _derived_strong_verdict(out, mode)) for key, mode in FGSM_CLAIMS.items()]
    white, black = _section(html, 'id="strong-fgsm_white"'), _section(html, 'id="strong-fgsm_black"')
    assert re.findall(r"<th>([^<]+)</th>", white)[2:] == ["FGSM", "PGD", "APGD-CE", "worst case"]
    assert re.findall(r"<th>([^<]+)</th>", black)[2:] == ["FGSM", "PGD", "APGD-CE"]  # no worst case: white box only
    assert white.count("<tr") == 2 + 2 and "0.1 ◂" in white  # ε 0.05 and 0.1; the headline at the claim's ε
    gain = verdicts[0].table[-1].strong[-1].diff  # the worst case at ε = 0.1, paired
    assert f"{100 * gain.diff:+.1f}</span> [{100 * gain.lo:.1f}, {100 * gain.hi:.1f}]" in white
    assert "Rule: A method&#39;s gain is its top-1 accuracy minus ERM&#39;s" in html


def test_the_worst_case_sits_beside_each_white_box_attack(full):
    out, html = full
    _, worst, _ = _stored(out)
    assert {tuple(w["attacks"]) for w in worst} == {("apgd-ce", "fgsm", "ifgsm", "pgd"), ("fgsm", "ifgsm", "pgd")}
    table = _section(html, '<table id="robustness-table">')
    rows = re.findall(r"<tr><td class=\"l\">(.*?)</tr>", table, re.S)
    assert {re.match(r"[^<]+", r).group() for r in rows} == {"FGSM", "I-FGSM", "PGD", "APGD-CE"}
    for w in worst:
        shown = f"{100 * w['top1']:.2f} <span"
        mine = [r for r in rows if f">{w['model']}</td><td>{w['eps']:.4g}</td>" in r and "white" in r]
        assert len(mine) == (4 if w["eps"] == 0.1 else 3) and all(shown in r for r in mine)
    assert all("—" in r for r in rows if ">black<" in r)  # black box: no worst case


def test_indicators_are_tabulated_per_attack_and_model_with_advice_where_they_fired(full):
    out, html = full
    _, _, stored = _stored(out)
    section = html[html.index('<h2 id="indicators">') : html.index('<h2 id="probe">')]
    groups = {(r["attack"], r["model"]) for r in stored}
    assert len(re.findall(r'<table class="indicators"', section)) == len(groups) == 8  # 4 attacks × 2 models
    fired = [r for r in stored if r["status"] == "fired"]
    assert section.count("<details>") == len(groups - {(r["attack"], r["model"]) for r in fired})
    for name in {r["indicator"] for r in stored}:
        assert INDICATORS[name].label in section
        assert INDICATORS[name].meaning.replace("'", "&#39;") in section
        advice = INDICATORS[name].advice.replace("'", "&#39;")
        assert (f"Fired: {advice}" in section) == any(r["indicator"] == name for r in fired), name
    if fired:
        assert f"{len(fired)} attack-failure indicator(s) fired" in html


@pytest.fixture
def copy(full, tmp_path, monkeypatch):
    """A copy of the full run's output to change; its reports are built without figures (they are slow)."""
    from robustbench_mixup.report import pages as report

    for figure in ("training_figure", "robustness_figure"):
        monkeypatch.setattr(report, figure, lambda *a, **k: None)
    out = tmp_path / "copy"
    shutil.copytree(full[0], out)
    return out


def _add_flag(out, status, p_value, detail, check="monotone_in_eps"):
    con = sqlite3.connect(Layout(out).database)
    with con:
        con.execute(
            "INSERT INTO attack_flags (run, attack, backend, n, check_name, model, mode, eps, detail, created, status,"
            " p_value) VALUES ('r', 'pgd', 'native', 359, ?, 'mixup', 'white', 0.1, ?, 'now', ?, ?)",
            (check, detail, status, p_value),
        )
    con.close()


def test_checks_within_sampling_noise_are_listed_calmly_and_only_failures_alarm(copy):
    out = copy
    _add_flag(out, "noise", 0.31, "accuracy rises from 0.5432 at ε=0.05 to 0.5460")
    html = build(out=out, run="r").read_text()
    sanity = html[html.index('<div id="health"') : html.index('<h2 id="summary">')]
    assert 'id="flags-failed"' not in sanity and "may overstate robustness" not in sanity
    if 'id="indicators-fired"' not in sanity:  # noise alone colours the box amber, never red
        assert 'class="health h-noise"' in sanity
    noise = _section(sanity, 'id="flags-noise"', "</details>")
    assert "1 ordering difference(s) within sampling noise" in noise and "(p = 0.31)" in noise
    _add_flag(out, "failed", 1e-5, HOSTILE, check="pgd_le_ifgsm")
    html = build(out=out, run="r").read_text()
    failed = _section(html, 'id="flags-failed"', "</div>")
    assert "1 check(s) failed" in failed and "may overstate robustness" in failed and "(p = 1e-05)" in failed
    assert "pgd_le_ifgsm" in failed and "0.5460" not in failed  # the noise one is not among the failures
    assert "0.5460" in _section(html, 'id="flags-noise"', "</details>")
    assert 'class="health h-failed"' in html and "1 sanity check(s) failed" in html
    assert HOSTILE not in html and "&lt;script&gt;" in failed


def test_rows_stored_without_outcomes_are_not_paired_and_the_report_says_what_to_rerun(copy):
    out = copy
    con = sqlite3.connect(Layout(out).database)
    with con:  # as a database written before per-example outcomes were kept
        con.execute("UPDATE attack_results SET correct = NULL")
        con.execute("DELETE FROM worst_case")
    con.close()
    html = build(out=out, run="r").read_text()
    headline = _section(html, '<table id="strong-table">')
    assert headline.count("not paired: re-run</span>") == 2
    assert "stored without per-example outcomes: FGSM" in headline
    assert f"robust-eval fgsm --eps 0 0.05 0.1 --run r --out {out}" in headline
    assert "worst case" not in _section(html, 'id="strong-fgsm_white"')
    assert "not paired: re-run<br>" in _section(html, 'id="strong-fgsm_white"')


def test_a_rerun_with_another_setting_neither_replaces_a_figure_nor_joins_a_curve(copy):
    """After `probe --pairs 100` the report still shows the figure of the 200 pairs its claims cite, and names
    the 100 as another setting; after `pgd --n 50` the PGD curve still draws the full n, and the n = 50 rows
    are rows of their own, labelled."""
    from robustbench_mixup.report.theme import read_png
    from robustbench_mixup.verdicts.claims import stage_setting_rows

    out = copy
    draw_probe(Layout(out), probe_run(ProbeConfig(pairs=100, lambdas=5, resamples=100), out=out, run="r",
                                      device="cpu"))  # fmt: skip
    evaluate_run(AttackConfig(attack="pgd", eps=(0.05, 0.1), steps=3, n=50), out=out, run="r", device="cpu")
    html = build(out=out, run="r").read_text()
    shown = read_png(Layout(out).probe_figure("r", "train", "exclude", 200))
    assert shown is not None and f'id="fig-probe" alt="miss rate and gradient norm against λ" src="{shown}"' in html
    assert str(read_png(Layout(out).probe_figure("r", "train", "exclude", 100))) not in html
    probe = _section(html, 'id="probe-setting"', "</p>")
    assert "200 train pairs (exclude same class)" in probe and "not drawn: 100 train pairs" in probe
    claims = _section(html, '<table id="claims-table">')
    assert "200 train pairs of different classes" in claims and "100 train pairs" not in claims
    rows, _, _ = _stored(out)
    drawn = stage_setting_rows(rows, ("erm", "mixup"))
    assert {r["n"] for r in drawn if r["attack"] == "pgd"} == {max(r["n"] for r in rows)}
    assert {r["n"] for r in rows if r["attack"] == "pgd"} == {50, max(r["n"] for r in rows)}
    table = _section(html, '<table id="robustness-table">')
    assert table.count("no: another setting (n = 50, 3 steps)") == 8  # 2 models × 2 ε × white and black box
