import dataclasses
import re

import pytest
from helpers import assert_one_line_error, run_cli

from robustbench_mixup import config, pipeline
from robustbench_mixup.config import PRESETS, AttackConfig, Preset
from robustbench_mixup.layout import Layout
from robustbench_mixup.report import collect
from robustbench_mixup.results import ResultsDB

FGSM = AttackConfig("fgsm", (0.0, 0.05, 0.1))
IFGSM = AttackConfig("ifgsm", (0.05,), steps=3)
TINY = Preset(
    name="tiny", dataset="digits", model="mlp", epochs=2, alpha=1.0, attacks=(FGSM, IFGSM), probe_pairs=100,
    probe_lambdas=5, sweep_noise=(0.5,), sweep_alpha=(0.0, 4.0), sweep_epochs=2,
)  # fmt: skip


def test_run_does_every_stage_then_skips_them_all(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(config.PRESETS, "tiny", TINY)
    code, stdout, err = run_cli(capsys, "run", "--preset", "tiny", "--out", str(tmp_path), "--device", "cpu")
    assert code == 0, err
    path = tmp_path / "reports" / "tiny" / "index.html"
    assert path.is_file() and f"report: {path.resolve().as_uri()}" in stdout
    for claim in ("white-box FGSM error", "black-box I-FGSM error", "miss rate", "corrupted labels", "clean accuracy"):
        assert re.search(rf"(reproduced|not reproduced|inconclusive) .*{claim}", stdout), claim
    html = path.read_text()
    assert "Not run yet" not in html and "not measured" not in html
    commands = collect(tmp_path, "tiny")["commands"]  # a preset run's suggestions carry the preset's settings
    assert "ifgsm --eps 0.05 --steps 3 --run tiny" in commands["ifgsm"]
    assert "--noise 0.5 --alpha 0 4 --epochs 2" in commands["sweep"]
    with ResultsDB(Layout(tmp_path).database) as db:
        timings = db.get_run("tiny")["timings"]
    assert set(timings) == {"train", "fgsm", "ifgsm", "probe", "sweep", "report"}
    capsys.readouterr()
    pipeline.run_pipeline(TINY, out=tmp_path, device="cpu")
    err = capsys.readouterr().err
    assert err.count("done before, skipped") == 5  # all but the report, which is always rebuilt

    # A changed setting re-runs exactly the stages whose stored results it no longer matches.
    changes = (
        ({"attacks": (dataclasses.replace(FGSM, eps=(0.0, 0.07)), IFGSM)}, "fgsm"),
        ({"attacks": (FGSM, dataclasses.replace(IFGSM, steps=2))}, "ifgsm"),
        ({"attacks": (FGSM, dataclasses.replace(IFGSM, n=100))}, "ifgsm"),
        ({"probe_lambdas": 4}, "probe"),
        ({"probe_pairs": 50}, "probe"),
    )
    for change, stage in changes:
        pipeline.run_pipeline(dataclasses.replace(TINY, **change), out=tmp_path, device="cpu")
        err = capsys.readouterr().err
        ran = re.findall(r"\] (\w+) \.\.\.", err)
        assert ran == [stage, "report"], (change, err)


def test_an_interrupted_stage_resumes_and_finished_ones_are_skipped(tmp_path, capsys, monkeypatch):
    real = pipeline.probe_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "probe_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_pipeline(TINY, out=tmp_path, device="cpu")
    monkeypatch.setattr(pipeline, "probe_run", real)
    capsys.readouterr()
    pipeline.run_pipeline(TINY, out=tmp_path, device="cpu")
    err = capsys.readouterr().err
    for stage in ("train", "fgsm", "ifgsm"):
        assert f"{stage}: done before, skipped" in err
    assert "[4/6] probe ..." in err and "[5/6] sweep ..." in err


def test_presets_are_valid_and_the_quick_one_is_the_default(capsys):
    from robustbench_mixup.train import TrainConfig

    for p in PRESETS.values():
        TrainConfig(dataset=p.dataset, model=p.model, epochs=p.epochs, alpha=p.alpha).validate()
        fgsm = p.attack("fgsm").validate()
        assert fgsm.eps[0] == 0.0 and max(fgsm.eps) <= 1 and p.attack("ifgsm").validate().steps == 10
    assert {4 / 255, 8 / 255} <= set(PRESETS["paper"].attack("fgsm").eps)
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0 and "(default: quick)" in out and "robust-eval run --preset paper" in out


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--preset", "huge"], ["--preset", "invalid choice"]),
        (["--run", "../x"], ["invalid run name"]),
    ],
)
def test_run_bad_input(capsys, tmp_path, argv, needles):
    code, _, err = run_cli(capsys, "run", *argv, "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "o").exists()


def test_run_into_an_unwritable_out(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "run", "--out", str(blocker / "sub"), "--device", "cpu")
    assert_one_line_error(code, err, "is not a writable directory")


def test_run_with_a_missing_dataset_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "run", "--preset", "paper", "--out", str(tmp_path / "o"), "--data-root", str(tmp_path / "none"),
        "--device", "cpu",
    )  # fmt: skip
    assert_one_line_error(code, err, "dataset 'cifar10' not found", "--download")
    assert not (tmp_path / "o").exists()
