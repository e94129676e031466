"""Training on a subset (`--train-n`): the same images for every stage that trains or reads training
pairs, recorded, said in the report, refused with one line where it would mix two sets of images."""

import dataclasses
import json

import pytest
from helpers import assert_one_line_error, run_cli

from robustbench_mixup.cli.pipeline import check_subset, run_pipeline
from robustbench_mixup.settings.commands import sweep_command
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.settings.presets import PRESETS
from robustbench_mixup.settings.sweeps import SweepConfig
from robustbench_mixup.stages.executors import run_all
from robustbench_mixup.store.database import ResultsDB
from robustbench_mixup.verdicts import claims

DIGITS = ["--dataset", "digits", "--model", "mlp", "--epochs", "1", "--batch-size", "32"]


@pytest.mark.slow
def test_train_probe_and_sweep_on_a_subset_see_the_same_images_and_the_report_says_so(capsys, tmp_path):
    out = ["--out", str(tmp_path)]
    code, _, err = run_cli(capsys, "train", *DIGITS, "--train-n", "300", "--run", "r", *out)
    assert code == 0, err
    stored = json.loads(Layout(tmp_path).run_json("r").read_text())
    assert stored["dataset"]["n_train"] == 300 and stored["dataset"]["train_of"] == 1438
    assert stored["config"]["train_n"] == 300
    code, _, err = run_cli(capsys, "probe", "--pairs", "40", "--lambdas", "3", "--run", "r", *out)
    assert code == 0, err
    code, _, err = run_cli(capsys, "sweep", "corrupt", *DIGITS, "--noise", "0.5", "--alpha", "0", "8",
                           "--train-n", "300", "--name", "r", *out)  # fmt: skip
    assert code == 0, err
    with ResultsDB(Layout(tmp_path).database) as db:
        jobs = db.sweep_jobs("r")
    assert {j["n_corrupted"] for j in jobs} == {150}  # half of the 300 images kept, not of all 1,438
    code, _, err = run_cli(capsys, "report", "--run", "r", *out)
    assert code == 0, err
    html = Layout(tmp_path).report("r").read_text()
    assert "Trained on a stratified subset of 300 of the 1,438 training images" in html
    assert 'id="sweep-subset">Every job trained on a stratified subset of 300 training images' in html
    # the memorization claim reads this sweep; one on all images is refused as another setting
    results = claims.RunResults(dataset="digits", model="mlp", train_n=300, sweep_config={
        "dataset": "digits", "model": "mlp"}, sweep_jobs=jobs)  # fmt: skip
    assert claims.memorization_points(results, "mixup") == (
        "the sweep named like the run trained on all training images, the run on a subset of 300 training images"
    )


def test_a_sweep_config_records_its_subset_only_when_there_is_one_and_its_command_rebuilds_it():
    plain = SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0, 8.0), epochs=2)
    assert "train_n" not in plain.to_dict()
    sub = SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0, 8.0), epochs=2, train_n=300)
    assert sub.to_dict()["train_n"] == 300 and sub.job_config(sub.jobs()[0]).train_n == 300
    words = sweep_command(".", "s", sub).split()
    assert words[words.index("--train-n") + 1] == "300"
    with pytest.raises(UsageError, match="--train-n must be a positive number"):
        SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0,), epochs=2, train_n=0).validate()


def test_a_run_started_on_other_images_is_refused_with_the_option_that_finishes_it(tmp_path):
    fashion = PRESETS["fashion"]
    with ResultsDB(Layout(tmp_path).database) as db:  # as a CPU run of the preset leaves it
        db.start_run("fashion", kind="train", config=fashion.on("cpu").train().to_dict(), seed=0,
                     dataset="fashion-mnist", environment={})  # fmt: skip
    before = Layout(tmp_path).database.stat().st_mtime_ns
    on_gpu = dataclasses.replace(fashion, train_n=None)  # what `.on("cuda")` makes of it
    with pytest.raises(UsageError, match=r"trained on a subset of 10000 training images, and here the preset trains "
                                         r"on all training images: pass --train-n 10000"):  # fmt: skip
        run_pipeline(on_gpu, out=tmp_path, device="cpu")
    assert Layout(tmp_path).database.stat().st_mtime_ns == before
    # a run of other settings as well (the fashion preset before it had a subset): not told to pass --train-n
    old = dataclasses.replace(fashion, epochs=30, train_n=None)
    with ResultsDB(Layout(tmp_path).database) as db:
        db.start_run("old", kind="train", config=old.train().to_dict(), seed=0, dataset="fashion-mnist",
                     environment={})  # fmt: skip
    assert check_subset(fashion.on("cpu"), Layout(tmp_path), "old") is None  # training's own line refuses it


def test_run_train_n_overrides_the_presets_subset_on_every_device(capsys, tmp_path, monkeypatch):
    seen = {}

    def stop(p, **kwargs):
        seen["preset"] = p
        raise UsageError("stopped before anything ran")

    monkeypatch.setattr("robustbench_mixup.cli.pipeline.run_pipeline", stop)
    code, _, err = run_cli(capsys, "run", "--preset", "fashion", "--train-n", "all", "--out", str(tmp_path))
    assert_one_line_error(code, err, "stopped before anything ran")
    assert seen["preset"].train_n is None and seen["preset"].on("cpu").train_n is None
    code, _, err = run_cli(capsys, "run", "--preset", "quick", "--train-n", "1000", "--out", str(tmp_path))
    assert_one_line_error(code, err, "stopped before anything ran")
    assert seen["preset"].train_n == 1000 and seen["preset"].on("cuda").train_n == 1000


class _Meter:
    def __init__(self) -> None:
        self.total, self.counted = None, []

    def start(self, total: int) -> None:
        self.total = total

    def update(self, k: int = 1) -> None:
        self.counted.append(k)


def _ticking(cfg, job, *, threads=None, on_epoch=None, parent=None):
    for epoch in range(job["todo"]):
        if on_epoch is not None:
            on_epoch(job, epoch)
    return {"key": job["key"], "value": job["todo"] * cfg}


def _silent(cfg, job, *, threads=None, on_epoch=None, parent=None):  # as a worker's result: no ticks on the way
    return {"key": job["key"], "value": 0}


def test_run_all_pairs_results_with_their_jobs_and_counts_epochs_once():
    jobs = [{"key": "a", "todo": 3}, {"key": "b", "todo": 1}]  # b resumed: 1 of its 4 epochs left
    meter = _Meter()
    got = list(run_all(_ticking, jobs, (10,), key=lambda j: j["key"], epochs=lambda j: 4, progress=meter))
    assert [(j["key"], r["value"]) for j, r in got] == [("a", 30), ("b", 10)]
    assert meter.total == 8 and meter.counted == [1, 1, 1, 1]  # ticked as they ended, not again on return
    meter = _Meter()
    got = list(run_all(_silent, jobs, (10,), key=lambda j: j["key"], epochs=lambda j: 4, progress=meter))
    assert meter.total == 8 and meter.counted == [4, 4]  # nothing ticked: each job's epochs when it came back
    got = list(run_all(_silent, jobs, (1,), key=lambda j: j["key"], epochs=lambda j: 4))  # no meter: fine
    assert got == [(jobs[0], {"key": "a", "value": 0}), (jobs[1], {"key": "b", "value": 0})]
    assert all(j is job for (j, _), job in zip(got, jobs, strict=True))  # the very jobs given, in their order
