"""Drawing a figure leaves the caller's matplotlib alone: backend, rcParams, pyplot, all as they were.

Seaborn (and so pyplot) is imported only inside the test that compares the theme with seaborn's, so the
fresh interpreter that `draw_everything` runs in sees exactly what the package imports.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib
import pytest
from matplotlib.colors import to_hex

from robustbench_mixup.report import theme as figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WATCHED = ("axes.facecolor", "axes.grid", "axes.edgecolor", "font.size", "axes.prop_cycle", "xtick.bottom")
# Distinctive settings of our own, nothing like the theme's, so a leak of the theme could not go unseen.
CALLER_RC = {"axes.facecolor": "#123456", "axes.grid": False, "font.size": 17.0, "xtick.bottom": True}


def _curve(k: int) -> dict[str, list[float]]:
    mid = [0.1 * k + 0.05 * i for i in range(5)]
    norm = [1 + v for v in mid]
    return {"miss_rate": mid, "miss_lo": [v - 0.02 for v in mid], "miss_hi": [v + 0.02 for v in mid],
            "grad_norm": norm, "norm_lo": [v - 0.1 for v in norm], "norm_hi": [v + 0.1 for v in norm]}  # fmt: skip


def _summaries() -> list[dict]:
    """What plot_sweep reads of a sweep's summaries: noise, method, alpha and dropout (for the order), history."""
    rows = []
    for noise in (0.2, 0.5):
        for alpha, method in ((0.0, "ERM"), (8.0, "mixup (α=8)")):
            for seed in (0, 1):
                history = [{"epoch": e, "test_err": 0.5 - 0.05 * e + 0.01 * seed, "train_corrupted_err": 0.9 - 0.1 * e}
                           for e in range(1, 4)]  # fmt: skip
                rows.append({"noise": noise, "alpha": alpha, "dropout": 0.0, "method": method, "seed": seed,
                             "history": history})  # fmt: skip
    return rows


def _epochs() -> list[dict]:
    return [{"model": m, "epoch": e, "train_loss": 2 / e, "train_acc": 0.5 + 0.1 * e, "test_acc": 0.4 + 0.1 * e}
            for m in ("erm", "mixup", "surrogate") for e in (1, 2, 3)]  # fmt: skip


def _attack_rows() -> list[dict]:
    return [{"attack": a, "mode": mode, "model": m, "backend": "native", "eps": eps, "top1": 0.9 - 3 * eps,
             "top1_lo": 0.85 - 3 * eps, "top1_hi": 0.95 - 3 * eps}
            for a in ("fgsm", "ifgsm") for mode in ("white", "black")
            for m in ("erm", "mixup") for eps in (0, 0.05, 0.1)]  # fmt: skip


def draw_everything(tmp: Path) -> list[bytes]:
    """Every figure the suite draws, on tiny made-up numbers; returns the PNGs' bytes (files checked here too)."""
    from robustbench_mixup.report import pages as report
    from robustbench_mixup.report.figures import plot_probe, plot_sweep

    probe = tmp / "probe" / "probe.png"
    plot_probe([0, 0.25, 0.5, 0.75, 1], {"erm": _curve(1), "mixup": _curve(2)}, probe, title="t: 10 train pairs")
    sweep = plot_sweep("s", _summaries(), tmp / "sweep" / "curves.png")
    assert sweep == tmp / "sweep" / "curves.png"
    for path in (probe, sweep):
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left beside it
    uris = [report.training_figure(_epochs()), report.robustness_figure(_attack_rows())]
    assert all(u.startswith("data:image/png;base64,") for u in uris)
    pngs = [probe.read_bytes(), sweep.read_bytes()] + [base64.b64decode(u.split(",", 1)[1]) for u in uris]
    for png in pngs:
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    return pngs


def test_figures_leave_backend_and_rcparams_as_they_were(tmp_path):
    backend = matplotlib.get_backend()
    with matplotlib.rc_context(CALLER_RC):
        before = {k: matplotlib.rcParams[k] for k in WATCHED}
        everything = dict(matplotlib.rcParams)
        draw_everything(tmp_path)
        assert {k: matplotlib.rcParams[k] for k in WATCHED} == before
        assert dict(matplotlib.rcParams) == everything
    assert matplotlib.get_backend() == backend


def test_a_fresh_interpreter_never_imports_pyplot(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path

        import matplotlib

        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_figures  # the package's modules, matplotlib and pytest, but no pyplot

        before = "matplotlib.pyplot" in sys.modules
        backend = dict.__getitem__(matplotlib.rcParams, "backend")  # as set, without resolving it
        test_figures.draw_everything(Path({str(tmp_path)!r}))
        print(before, "matplotlib.pyplot" in sys.modules, dict.__getitem__(matplotlib.rcParams, "backend") == backend)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    imported_before, imported_after, same_backend = done.stdout.split()
    assert imported_before == "False", "importing the package (or the test's helpers) imported pyplot"
    assert imported_after == "False", "drawing a figure imported pyplot"
    assert same_backend == "True"


def test_the_theme_is_what_seaborn_set_theme_gave():
    sns = pytest.importorskip("seaborn")

    with matplotlib.rc_context():
        sns.set_theme(style="whitegrid", context="paper", color_codes=False)  # color codes are not rcParams
        seaborn_rc = dict(matplotlib.rcParams)
    with figures.theme():
        ours = dict(matplotlib.rcParams)
    default = dict(matplotlib.rcParams)
    changed = {k for k in seaborn_rc if seaborn_rc[k] != default[k]} - {"image.cmap"}  # a seaborn-only colormap
    assert changed <= set(figures.THEME_RC)
    for key in set(figures.THEME_RC) - {"axes.prop_cycle"}:
        assert ours[key] == seaborn_rc[key], key
    cycle = [to_hex(c) for c in ours["axes.prop_cycle"].by_key()["color"]]
    assert cycle == [to_hex(c) for c in seaborn_rc["axes.prop_cycle"].by_key()["color"]]
    assert figures.palette(12) == [to_hex(c) for c in sns.color_palette("colorblind", 12)]
    assert figures.palette(3) == [to_hex(c) for c in sns.color_palette("colorblind", 3)]


def test_theme_applies_only_inside_its_block(tmp_path):
    with matplotlib.rc_context(CALLER_RC):
        with figures.theme():
            fig, axes = figures.new_figure(1, 2, figsize=(4, 2), sharey=True)
            assert fig.get_size_inches().tolist() == [4, 2] and len(axes) == 2
            assert to_hex(axes[0].get_facecolor()) == "#ffffff"
            assert matplotlib.rcParams["font.size"] == pytest.approx(9.6)
        assert matplotlib.rcParams["axes.facecolor"] == "#123456" and matplotlib.rcParams["font.size"] == 17.0
        path = figures.save_png(fig, tmp_path / "sub" / "f.png", dpi=50)  # the theme again while it draws
        assert path.read_bytes().startswith(PNG_MAGIC)
        assert [p.name for p in path.parent.iterdir()] == ["f.png"]
        uri = figures.png_data_uri(fig, dpi=50)
        assert base64.b64decode(uri.removeprefix("data:image/png;base64,")).startswith(PNG_MAGIC)
        assert matplotlib.rcParams["axes.facecolor"] == "#123456"
