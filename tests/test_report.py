import re
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_cli

from robustbench_mixup.config import AttackConfig, ProbeConfig
from robustbench_mixup.evaluation import evaluate_run
from robustbench_mixup.probing import probe_run
from robustbench_mixup.report import build
from robustbench_mixup.sweep import SweepConfig, run_sweep
from robustbench_mixup.train import TrainConfig, train_run

HOSTILE = "<script>alert('x')</script>"
CFG = TrainConfig(dataset="digits", model="mlp", epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A digits run with every stage done, and a hostile string in its recorded command line."""
    out = tmp_path_factory.mktemp("report")
    train_run(CFG, run="r", out=out, device="cpu", argv=["robust-eval", "train", "--data-root", HOSTILE])
    for attack in ("fgsm", "ifgsm"):
        evaluate_run(AttackConfig(attack=attack, eps=(0.0, 0.05, 0.1), steps=3), out=out, run="r", device="cpu")
    probe_run(ProbeConfig(pairs=200, lambdas=5, resamples=200), out=out, run="r", device="cpu")
    sweep = SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0, 4.0), epochs=2, batch_size=64)
    run_sweep(sweep, name="r", out=out, device="cpu")
    return out, build(out=out, run="r").read_text()


def test_every_section_is_there_with_its_figure_inline(full):
    _, html = full
    for section in ("summary", "sanity", "claims", "training", "robustness", "probe", "memorization", "provenance"):
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
    rows = re.findall(r"<tr>.*?</tr>", table, re.S)[1:]
    assert len(rows) == 7
    verdicts = re.findall(r'class="v-[a-z]+">([a-z ]+)<', table)
    assert len(verdicts) == 7 and set(verdicts) <= {"reproduced", "not reproduced", "inconclusive"}
    assert "Rule: A claim that mixup lowers" in html


def test_user_strings_are_escaped(full):
    _, html = full
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_a_run_with_missing_stages_says_what_fills_them(tmp_path, capsys):
    train_run(CFG, run="bare", out=tmp_path, device="cpu")
    code, stdout, err = run_cli(capsys, "report", "--out", str(tmp_path))
    assert code == 0, err
    html = (tmp_path / "reports" / "bare" / "index.html").read_text()
    assert stdout.strip().endswith("reports/bare/index.html")
    assert html.count("Not run yet") == 3
    for command in (
        "robust-eval fgsm --eps",
        "robust-eval probe --run bare",
        "robust-eval sweep corrupt --dataset digits",
    ):
        assert command in html
    assert html.count("not measured") == 6  # every claim but clean accuracy needs a later stage


def test_report_bad_input(capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", "--out", str(tmp_path))
    assert_one_line_error(code, err, "no trained run", "robust-eval train")
    train_run(CFG, run="x", out=tmp_path, device="cpu")
    code, _, err = run_cli(capsys, "report", "--run", "nope", "--out", str(tmp_path))
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
        page = browser.new_page(viewport={"width": 1200, "height": 900})
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
        shot = tmp_path / "report.png"
        page.set_viewport_size({"width": 1200, "height": 1400})
        page.goto(url)
        page.screenshot(path=str(shot))
        browser.close()
    assert errors == [] and dialogs == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert shot.stat().st_size > 20_000
    if os.environ.get("ROBUST_EVAL_SCREENSHOT"):  # refresh the README's picture: docs/report.png
        shutil.copy(shot, Path(__file__).resolve().parents[1] / "docs" / "report.png")


def test_comparison_report_side_by_side_with_seed_means(tmp_path, capsys):
    for seed in (0, 1):
        cfg = TrainConfig(dataset="digits", model="mlp", epochs=2, batch_size=64, seed=seed)
        train_run(cfg, run=f"s{seed}", out=tmp_path, device="cpu")
    evaluate_run(AttackConfig(attack="fgsm", eps=(0.0, 0.1)), out=tmp_path, run="s0", device="cpu")
    code, stdout, err = run_cli(capsys, "report", "--compare", "s0", "s1", "--out", str(tmp_path))
    assert code == 0, err
    path = stdout.strip()
    assert path.endswith("compare-s0-vs-s1/index.html")
    html = Path(path).read_text()
    assert 'id="seed-groups"' in html and "s0, s1" in html  # the two seeds of one setting: mean ± std
    assert re.search(r"\d+\.\d\d ± \d+\.\d\d", html[html.index('id="seed-groups"') :])
    assert 'id="fig-overlay"' in html and 'id="dataset-warning"' not in html
    assert html.count("not measured") >= 6  # s1 has no attacks yet


def test_comparing_runs_on_different_datasets_warns(tmp_path, capsys):
    train_run(CFG, run="a", out=tmp_path, device="cpu")
    train_run(TrainConfig(dataset="mnist-5k", model="mlp", epochs=1), run="b", out=tmp_path, device="cpu")
    code, stdout, err = run_cli(capsys, "report", "--compare", "a", "b", "--out", str(tmp_path))
    assert code == 0, err
    assert 'id="dataset-warning"' in Path(stdout.strip()).read_text()


def test_compare_needs_two_runs(tmp_path, capsys):
    train_run(CFG, run="a", out=tmp_path, device="cpu")
    code, _, err = run_cli(capsys, "report", "--compare", "a", "--out", str(tmp_path))
    assert_one_line_error(code, err, "--compare needs at least two different runs")
    code, _, err = run_cli(capsys, "report", "--compare", "a", "zzz", "--out", str(tmp_path))
    assert_one_line_error(code, err, "unknown run 'zzz'")
