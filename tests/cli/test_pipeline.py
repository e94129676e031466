import dataclasses
import re

import pytest
from helpers import assert_one_line_error, run_cli

from robustbench_mixup.cli import pipeline
from robustbench_mixup.settings import config, presets
from robustbench_mixup.settings.config import METHODS, AttackConfig
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.settings.presets import PRESETS, Preset
from robustbench_mixup.store.database import ResultsDB
from robustbench_mixup.verdicts.evidence import collect

FGSM = AttackConfig("fgsm", (0.0, 0.05, 0.1))
IFGSM = AttackConfig("ifgsm", (0.05,), steps=3)
TINY = Preset(
    name="tiny", dataset="digits", model="mlp", epochs=2, alpha=1.0, attacks=(FGSM, IFGSM), probe_pairs=100,
    probe_lambdas=5, sweep_noise=(0.5,), sweep_alpha=(0.0, 4.0), sweep_epochs=2,
)  # fmt: skip


def test_run_does_every_stage_then_skips_them_all(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
    code, stdout, err = run_cli(
        capsys, "run", "--preset", "tiny", "--out", str(tmp_path), "--device", "cpu", "--jobs", "1"
    )
    assert code == 0, err
    path = tmp_path / "reports" / "tiny" / "index.html"
    assert path.is_file() and f"report: {path.resolve().as_uri()}" in stdout
    for claim in ("white-box FGSM error", "black-box I-FGSM error", "miss rate", "corrupted labels", "clean accuracy"):
        assert re.search(rf"(reproduced|contradicted|inconclusive) .*{claim}", stdout), claim
    html = path.read_text()
    assert "Not run yet" not in html and "not measured" not in html
    commands = collect(tmp_path, "tiny")["commands"]  # a preset run's suggestions carry the preset's settings
    assert "ifgsm --eps 0.05 --steps 3 --run tiny" in commands["ifgsm"]
    assert "--noise 0.5 --alpha 0 4 --epochs 2" in commands["sweep"]
    with ResultsDB(Layout(tmp_path).database) as db:
        timings = db.get_run("tiny")["timings"]
    assert set(timings) == {"train", "diagnose", "fgsm", "ifgsm", "probe", "sweep", "report"}
    capsys.readouterr()
    pipeline.run_pipeline(TINY, out=tmp_path, device="cpu", sweep_workers=1)
    err = capsys.readouterr().err
    assert err.count("done before, skipped") == 6  # all but the report, which is always rebuilt

    # A changed setting re-runs exactly the stages whose stored results it no longer matches.
    changes = (
        ({"attacks": (dataclasses.replace(FGSM, eps=(0.0, 0.07)), IFGSM)}, "fgsm"),
        ({"attacks": (FGSM, dataclasses.replace(IFGSM, steps=2))}, "ifgsm"),
        ({"attacks": (FGSM, dataclasses.replace(IFGSM, n=100))}, "ifgsm"),
        ({"probe_lambdas": 4}, "probe"),
        ({"probe_pairs": 50}, "probe"),
    )
    for change, stage in changes:
        pipeline.run_pipeline(dataclasses.replace(TINY, **change), out=tmp_path, device="cpu", sweep_workers=1)
        err = capsys.readouterr().err
        ran = re.findall(r"\] (\w+) \.\.\.", err)
        assert ran == [stage, "report"], (change, err)


def test_an_interrupted_stage_resumes_and_finished_ones_are_skipped(tmp_path, capsys, monkeypatch):
    real = pipeline.probe_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "probe_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_pipeline(TINY, out=tmp_path, device="cpu", sweep_workers=1)
    monkeypatch.setattr(pipeline, "probe_run", real)
    capsys.readouterr()
    pipeline.run_pipeline(TINY, out=tmp_path, device="cpu", sweep_workers=1)
    err = capsys.readouterr().err
    for stage in ("train", "diagnose", "fgsm", "ifgsm"):
        assert f"{stage}: done before, skipped" in err
    assert "[5/7] probe ..." in err and "[6/7] sweep ..." in err


def test_presets_are_valid_and_the_quick_one_is_the_default(capsys):
    from robustbench_mixup.settings.config import TrainConfig

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
        (["--seeds", "1", "1"], ["--seeds must list each seed once"]),
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


def test_run_seeds_makes_a_group_whose_report_pools_the_seeds(tmp_path, capsys, monkeypatch):
    """`run --seeds 0 1` on digits/mlp: one run per seed, each with its own sweep seed, and no model of one
    seed equal to a model of another; the group's report pools the paired differences over both seeds."""
    import numpy as np

    from robustbench_mixup.learning import checkpoints

    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
    argv = ("run", "--preset", "tiny", "--out", str(tmp_path), "--device", "cpu", "--jobs", "1")
    code, stdout, err = run_cli(capsys, *argv, "--seeds", "0", "1")
    assert code == 0, err
    assert "group tiny (runs tiny-s0, tiny-s1)" in stdout and "2 seeds: each seed's paired difference" in stdout
    assert re.search(r"(reproduced|contradicted|inconclusive) +mixup lowers white-box FGSM error: mixup − ERM "
                     r"[+-][\d.]+ \[[+-][\d.]+, [+-][\d.]+\] points "
                     r"\(mixup ((better|worse) by [\d.]+ points|and ERM equal to the shown precision)\), "
                     r"p (=|<) ", stdout), stdout  # fmt: skip
    assert "what this report found:" in stdout  # the group's headline, then its address
    assert re.search(r"(Reproduced|Contradicted|Undecided), \d+ of \d+: “mixup ", stdout), stdout
    layout = Layout(tmp_path)
    with ResultsDB(layout.database) as db:
        assert db.get_group("tiny") == ["tiny-s0", "tiny-s1"]
        assert [db.get_run(r)["seed"] for r in ("tiny-s0", "tiny-s1")] == [0, 1]
        assert {j["seed"] for j in db.sweep_jobs("tiny-s1")} == {1}  # the sweep follows the run's seed
    weights = {(r, m): checkpoints.load(layout.checkpoint(r, m))[0].state_dict()
               for r in ("tiny-s0", "tiny-s1") for m in ("erm", "surrogate")}  # fmt: skip
    for a in weights:
        for b in weights:
            if a != b:
                assert not all(np.array_equal(weights[a][k], weights[b][k]) for k in weights[a]), (a, b)
    html = (tmp_path / "reports" / "tiny" / "index.html").read_text()
    assert "the intervals account for both seed-to-seed and test-sample variation" in html
    assert "hierarchical bootstrap over 2 seeds" in html and 'id="per-seed-table"' in html
    assert re.search(r'id="fig-forest" alt="[^"]+" src="data:image/png;base64,', html)
    assert html.count('<tr id="claim-') == 7

    capsys.readouterr()
    code, _, err = run_cli(capsys, *argv, "--seeds", "0", "1")  # everything stored: only the reports are rebuilt
    assert code == 0 and err.count("done before, skipped") == 12, err
    code, _, err = run_cli(capsys, *argv)  # the group's name is not a run's
    assert_one_line_error(code, err, "'tiny' names a group of seeds")
    code, _, err = run_cli(capsys, *argv, "--seeds", "0", "2")
    assert_one_line_error(code, err, "group 'tiny' already holds runs tiny-s0, tiny-s1")
    code, _, err = run_cli(capsys, *argv, "--run", "tiny-s0", "--seeds", "5")
    assert_one_line_error(code, err, "'tiny-s0' is already a run")


@pytest.mark.slow
def test_a_preset_of_the_whole_family_runs_its_seeds_and_judges_every_method(tmp_path, capsys, monkeypatch):
    pgd = AttackConfig("pgd", (0.05, 0.1), steps=3, mode="white")
    family = dataclasses.replace(TINY, name="fam", methods=tuple(config.METHODS), seeds=(0, 1), epochs=1,
                                 sweep_epochs=1, probe_pairs=50, attacks=(FGSM, IFGSM, pgd))  # fmt: skip
    monkeypatch.setitem(presets.PRESETS, "fam", family)
    code, stdout, err = run_cli(
        capsys, "run", "--preset", "fam", "--out", str(tmp_path), "--device", "cpu", "--jobs", "1"
    )
    assert code == 0, err
    assert "== seed 0 (1/2): run fam-s0" in err and "== seed 1 (2/2): run fam-s1" in err  # the preset's seeds
    for label in ("mixup", "CutMix", "Manifold Mixup", "label smoothing"):  # every method judged against ERM
        assert re.search(rf"(reproduced|contradicted|inconclusive) +{label} lowers white-box FGSM error", stdout)
        assert re.search(rf"(reproduced|contradicted|inconclusive) +{label} memorizes", stdout)  # its own sweep jobs
    html = (tmp_path / "reports" / "fam" / "index.html").read_text()
    assert html.count('<tr id="claim-') == 4 * 7 and html.count('class="method-row"') == 4
    assert "Holm" in html
    run_html = (tmp_path / "reports" / "fam-s0" / "index.html").read_text()
    table = run_html[run_html.index('<table id="diagnostics-table">') :]
    assert [m for m in config.METHODS if f'<td class="l">{m}</td>' in table[: table.index("</table>")]] == list(
        config.METHODS
    )
    capsys.readouterr()
    code, _, err = run_cli(capsys, "run", "--preset", "fam", "--out", str(tmp_path), "--device", "cpu", "--jobs", "1")
    assert code == 0 and err.count("done before, skipped") == 2 * 7, err  # PGD white only is found done too


def test_the_fashion_preset_trains_on_a_named_subset_on_a_cpu_and_on_all_on_a_gpu():
    fashion = PRESETS["fashion"]
    assert fashion.train_n is not None and fashion.methods == tuple(METHODS)
    cpu, gpu = fashion.on("cpu"), fashion.on("cuda")
    assert cpu.train().train_n == cpu.sweep().train_n == fashion.train_n
    assert gpu.train().train_n is None and gpu.sweep().train_n is None and "train_n" not in gpu.train().to_dict()
    asked = dataclasses.replace(fashion, train_n=2000, subset_on_gpu=True)  # `run --train-n 2000`
    assert asked.on("cuda").train().train_n == 2000
    assert PRESETS["quick"].on("cpu") == PRESETS["quick"] and "train_n" not in PRESETS["quick"].train().to_dict()


@pytest.mark.parametrize("value, needle", [("lots", "expected a number of training images or 'all'"),
                                           ("0", "--train-n must be a positive number")])  # fmt: skip
def test_run_bad_train_n_is_one_line_and_writes_nothing(capsys, tmp_path, value, needle):
    code, _, err = run_cli(capsys, "run", "--train-n", value, "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("seeds", "needle"), [(["-1"], "--seed must be in [0, "),
                                              (["0", "1", str(2**63)], "--seed must be in [0, "),
                                              (["0", "--jobs", "0"], "--jobs must be ≥ 1, got 0")])  # fmt: skip
def test_run_seeds_checks_every_seed_before_it_writes_anything(capsys, tmp_path, monkeypatch, seeds, needle):
    """A bad seed anywhere in --seeds (or a bad --jobs) is one line before the group is recorded or any seed is
    trained."""
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, "run", "--preset", "tiny", "--seeds", *seeds, "--out", str(out), "--device", "cpu")
    assert_one_line_error(code, err, needle)
    assert not out.exists()
    code, _, err = run_cli(capsys, "run", "--preset", "tiny", "--seeds", "0", "--out", str(out), "--device", "cpu",
                           "--jobs", "1")  # fmt: skip
    assert code == 0, err  # and no group was left behind to block the next run
