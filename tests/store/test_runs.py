"""One way to open a stored run: its checked settings, its methods' models, its data as it was trained."""

import json

import pytest
import torch
from helpers import assert_one_line_error, run_cli

from robustbench_mixup.learning.data import load_dataset
from robustbench_mixup.settings.config import TrainConfig
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.stages.train import train_run
from robustbench_mixup.store.runs import open_run


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(dataset="digits", model="mlp", epochs=1, batch_size=64, seed=4, train_n=500,
                      methods=("erm", "cutmix"))  # fmt: skip
    train_run(cfg, run="sub", out=root, device="cpu")
    return root


def test_open_run_gives_the_runs_methods_on_its_own_training_subset(out):
    opened = open_run(out, None, device="cpu")  # the latest run
    assert opened.name == "sub" and opened.seed == 4 and opened.device == torch.device("cpu")
    assert list(opened.models) == ["erm", "cutmix"] and set(opened.metas) == {"erm", "cutmix"}
    assert all(not m.training for m in opened.models.values())
    subset = load_dataset("digits", train_n=500)  # the subset the run trained on, not the whole split
    assert len(opened.data.train_labels) == 500 and torch.equal(opened.data.train_images, subset.train_images)
    assert torch.equal(opened.data.test_images, load_dataset("digits").test_images)  # the test split whole
    assert opened.config == TrainConfig(**opened.config).validate().to_dict()


def test_open_run_refuses_what_is_not_a_trained_run(out, tmp_path, capsys):
    with pytest.raises(UsageError, match="unknown run 'nope'"):
        open_run(out, "nope", device="cpu")
    with pytest.raises(UsageError, match="no trained run"):
        open_run(tmp_path, None, device="cpu")
    code, _, err = run_cli(capsys, "diagnose", "--run", "nope", "--out", str(out))  # every stage opens it so
    assert_one_line_error(code, err, "unknown run 'nope'")


def test_a_member_checkpoint_of_another_run_is_refused_with_one_line(out, tmp_path, capsys):
    """A checkpoint copied in from another run (here: another dataset) is not evaluated as this run's member."""
    import shutil

    from robustbench_mixup.settings.layout import Layout

    other = tmp_path / "other"
    train_run(TrainConfig(dataset="mnist-5k", model="mlp", epochs=1, methods=("erm", "cutmix")), run="sub", out=other,
              device="cpu", members=("erm",))  # fmt: skip
    mine = tmp_path / "mine"
    shutil.copytree(out, mine)
    shutil.copy(Layout(other).checkpoint("sub", "erm"), Layout(mine).checkpoint("sub", "erm"))
    with pytest.raises(UsageError, match="is not member 'erm' of run 'sub' on digits: it says run 'sub', member "
                                         "'erm', dataset 'mnist-5k'"):  # fmt: skip
        open_run(mine, "sub", device="cpu")
    before = (mine / "reports" / "results.sqlite").read_bytes()
    code, _, err = run_cli(capsys, "pgd", "--eps", "0.1", "--steps", "2", "--out", str(mine), "--device", "cpu")
    assert_one_line_error(code, err, "is not member 'erm' of run 'sub'")
    assert (mine / "reports" / "results.sqlite").read_bytes() == before


def test_train_resume_refuses_a_damaged_run_json_instead_of_writing_over_it(out, tmp_path, capsys):
    import shutil

    from robustbench_mixup.settings.layout import Layout

    mine = tmp_path / "mine"
    shutil.copytree(out, mine)
    run_json = Layout(mine).run_json("sub")
    run_json.write_text("{not json")
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--batch-size",
                           "64", "--seed", "4", "--train-n", "500", "--methods", "erm", "cutmix", "--run", "sub",
                           "--out", str(mine), "--device", "cpu", "--resume")  # fmt: skip
    assert_one_line_error(code, err, f"{run_json} is corrupt (not JSON")
    assert run_json.read_text() == "{not json"
    run_json.unlink()  # as the line says: without it, the resume writes it anew
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--batch-size",
                           "64", "--seed", "4", "--train-n", "500", "--methods", "erm", "cutmix", "--run", "sub",
                           "--out", str(mine), "--device", "cpu", "--resume")  # fmt: skip
    assert code == 0, err
    assert json.loads(run_json.read_text())["run"] == "sub"
