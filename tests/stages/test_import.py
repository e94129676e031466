"""`robust-eval import`: models trained elsewhere made into a run that every later command reads."""

import copy
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_cli
from safetensors.torch import save_file
from torch import nn

from robustbench_mixup.data import load_dataset
from robustbench_mixup.learning import checkpoints
from robustbench_mixup.learning.weights import read_state_dict
from robustbench_mixup.learning.zoo import Imported
from robustbench_mixup.models import build_model
from robustbench_mixup.settings.config import AttackConfig, ProbeConfig, TrainConfig
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.stages.attack import evaluate_run
from robustbench_mixup.stages.import_run import _checks
from robustbench_mixup.stages.probe import probe_run
from robustbench_mixup.stages.train import train_run
from robustbench_mixup.store.database import ResultsDB
from robustbench_mixup.verdicts.claims import CLAIMS

WHERE = ["--dataset", "digits", "--arch", "mlp", "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An ERM and a mixup mlp on digits, trained by plain PyTorch code (not the suite's trainer) from the same
    start, saved as a user would: a wrapped .pt state dict with DataParallel's prefix, and a safetensors file."""
    root = tmp_path_factory.mktemp("weights")
    data = load_dataset("digits")
    torch.manual_seed(0)
    start = build_model("mlp", in_shape=list(data.image_shape), num_classes=10, mean=list(data.mean),
                        std=list(data.std))  # fmt: skip
    g = torch.Generator().manual_seed(0)
    for name in ("erm", "mixup"):
        model = copy.deepcopy(start)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(4):
            for i in range(0, len(data.train_labels), 64):
                x, y = data.train_images[i : i + 64], nn.functional.one_hot(data.train_labels[i : i + 64], 10).float()
                if name == "mixup":
                    lam, j = float(torch.rand(1, generator=g)), torch.randperm(len(y), generator=g)
                    x, y = lam * x + (1 - lam) * x[j], lam * y + (1 - lam) * y[j]
                opt.zero_grad()
                (-(y * model(x).log_softmax(1)).sum(1).mean()).backward()
                opt.step()
        state = model.state_dict()
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 4}, root / f"{name}.pt")
        save_file(state, str(root / f"{name}.safetensors"))
    return root


def test_a_plain_pytorch_pair_is_imported_attacked_probed_diagnosed_and_reported(files, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "import", "--run", "mine", *WHERE, "--member", f"erm={files / 'erm.pt'}",
                                "--member", f"mixup={files / 'mixup.safetensors'}", "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert "run mine: digits, mlp, imported erm, mixup" in stdout and "logits" in stdout
    fgsm = ["fgsm", "--eps", "0.05", "0.1", "--mode", "white"]
    pgd = ["pgd", "--eps", "0.1", "--steps", "5", "--mode", "white"]
    for argv in (fgsm, pgd, ["probe", "--pairs", "100", "--lambdas", "5"], ["diagnose"]):
        code, _, err = run_cli(capsys, *argv, "--run", "mine", "--out", str(out), "--device", "cpu")
        assert code == 0, (argv, err)
    code, _, err = run_cli(capsys, "report", "--run", "mine", "--out", str(out))
    assert code == 0, err
    html = (out / "reports" / "mine" / "index.html").read_text()
    assert 'id="imported"' in html and "not on the same training" in html
    assert "erm: erm.pt, mixup: mixup.safetensors" in html and 'id="import-checks"' in html
    rows = dict(re.findall(r'<tr id="claim-([a-z_]+)">(.*?)</tr>', html, re.S))
    assert list(rows) == [spec.key for spec in CLAIMS]  # every claim, judged on the same test examples
    unmeasured = {key for key, row in rows.items() if "not measured" in row}
    assert unmeasured == {"fgsm_black", "ifgsm_black", "memorization"}  # no source, no training: said so
    assert "imported models: memorization is measured on models the sweep trains itself" in rows["memorization"]
    assert "the package's network carries it in its weights (erm: mean [0.3059], std [0.3765]" in html
    summary = html[html.index('<h2 id="summary">') : html.index('<h2 id="claims">')]
    assert "surrogate" not in summary and summary.count("imported, not trained here") == 2
    code, stdout, err = run_cli(capsys, "export", "--run", "mine", "--out", str(out))
    assert code == 0, err
    entries = json.loads(Path(stdout.strip()).read_text())
    unknown = ("seed", "additional_data", "number_forward_passes")  # what the training elsewhere used: not known here
    assert entries and all(e["imported"] and all(e[k] is None for k in unknown) for e in entries)
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.1", "--run", "mine", "--out", str(out), "--device", "cpu")
    assert_one_line_error(code, err, "run 'mine' was imported without a black-box source", "--mode white")
    code, stdout, err = run_cli(capsys, "import", "--run", "mine", *WHERE, "--member", f"erm={files / 'erm.pt'}",
                                "--member", f"mixup={files / 'mixup.safetensors'}", "--out", str(out))  # fmt: skip
    assert code == 0, err  # the same files again: found done
    code, _, err = run_cli(capsys, "import", "--run", "mine", *WHERE, "--member", f"erm={files / 'mixup.pt'}",
                           "--member", f"mixup={files / 'erm.pt'}", "--out", str(out))  # fmt: skip
    assert_one_line_error(code, err, "run 'mine' already exists")


def test_a_runs_own_weights_imported_give_the_same_outcomes_example_for_example(tmp_path, capsys):
    """The package's checkpoints, saved as plain state dicts and imported: FGSM, PGD (random starts from the same
    seed) and the probe give per-example outcomes identical to the native run's."""
    native = tmp_path / "native"
    train_run(TrainConfig(dataset="digits", model="mlp", epochs=2, batch_size=64), run="d", out=native, device="cpu")
    members = []
    for m in ("erm", "mixup"):
        weights = {k: v for k, v in checkpoints.read(Layout(native).checkpoint("d", m))[0].items()
                   if not k.startswith(checkpoints.EXTRA)}  # fmt: skip
        torch.save(weights, tmp_path / f"{m}.pt")
        members += ["--member", f"{m}={tmp_path / f'{m}.pt'}"]
    surrogate = {k: v for k, v in checkpoints.read(Layout(native).checkpoint("d", "surrogate"))[0].items()
                 if not k.startswith(checkpoints.EXTRA)}  # fmt: skip
    save_file(surrogate, str(tmp_path / "surrogate.safetensors"))
    imported = tmp_path / "imported"
    code, _, err = run_cli(capsys, "import", "--run", "d", *WHERE, *members, "--source",
                           f"surrogate={tmp_path / 'surrogate.safetensors'}", "--out", str(imported))  # fmt: skip
    assert code == 0, err
    for out in (native, imported):
        evaluate_run(AttackConfig("fgsm", (0.05, 0.1)), out=out, run="d", device="cpu")
        evaluate_run(AttackConfig("pgd", (0.1,), steps=5, mode="white"), out=out, run="d", device="cpu")
        probe_run(ProbeConfig(pairs=100, lambdas=5), out=out, run="d", device="cpu")

    def outcomes(out):
        with ResultsDB(Layout(out).database) as db:
            attacks = {(r["model"], r["attack"], r["mode"], r["eps"]): r["correct"]
                       for r in db.attack_rows("d", outcomes=True)}  # fmt: skip
            probes = {(r["model"], r["lam"]): (r["missed"], r["norms"]) for r in db.probe_rows("d", outcomes=True)}
            clean = {r["model"]: r["correct"] for r in db.clean_rows("d")}
        return attacks, probes, clean

    (a1, p1, c1), (a2, p2, c2) = outcomes(native), outcomes(imported)
    assert a1.keys() == a2.keys() and len(a1) == 2 * 2 * 2 + 2  # fgsm white and black at 2 ε, pgd white, per model
    assert all(np.array_equal(a1[k], a2[k]) for k in a1)
    assert p1.keys() == p2.keys() and all(np.array_equal(p1[k][0], p2[k][0]) and np.array_equal(p1[k][1], p2[k][1])
                                          for k in p1)  # fmt: skip
    assert c1.keys() == c2.keys() and all(np.array_equal(c1[k], c2[k]) for k in c1)


def test_a_torchvision_network_behind_its_declared_normalization_round_trips_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = Imported("torchvision:resnet18", [3, 32, 32], 10, [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]).eval()
    path = tmp_path / "tv.safetensors"
    checkpoints.save(model, path, metadata={"run": "tv"})
    loaded, meta = checkpoints.load(path)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
        mean, std = torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1), torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1)
        assert torch.allclose(model(x), model.net((x - mean) / std))  # the normalization is inside
    assert meta["model"] == {"name": "imported", "kwargs": {"arch": "torchvision:resnet18", "in_shape": [3, 32, 32],
                             "num_classes": 10, "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}}  # fmt: skip


def test_what_a_model_must_be_is_checked_before_anything_is_written():
    data = load_dataset("digits")

    class Softmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = build_model("mlp", in_shape=[1, 8, 8], num_classes=10, mean=[0.3], std=[0.37])

        def forward(self, x):
            return self.net(x).softmax(1)

    class Dropout(Softmax):
        def forward(self, x):
            return nn.functional.dropout(self.net(x), 0.5, training=True)  # random even in eval mode

    assert _checks("m", Softmax().eval(), data, torch.device("cpu"), force=True)["probabilities"] is True
    with pytest.raises(ValueError, match="different outputs for the same images in eval mode"):
        _checks("m", Dropout().eval(), data, torch.device("cpu"), force=True)


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/robust-eval-pickle-ran",))


@pytest.mark.parametrize("case", ["whole model", "code", "missing key", "extra key", "misshapen", "nan", "list",
                                  "chance", "not a file", "suffix", "garbage", "empty"])  # fmt: skip
def test_hostile_and_broken_weights_are_one_line_and_nothing_written(files, tmp_path, capsys, case):
    marker = Path("/tmp/robust-eval-pickle-ran")
    marker.unlink(missing_ok=True)
    good = read_state_dict(files / "erm.pt")
    bad = tmp_path / "bad.pt"
    if case == "whole model":
        model = build_model("mlp", in_shape=[1, 8, 8], num_classes=10, mean=[0.3], std=[0.37])
        torch.save(model, bad)
        needle = "holds more than tensors, so it is not read"
    elif case == "code":
        bad.write_bytes(pickle.dumps({"w": _RunsCode()}))
        needle = "holds more than tensors, so it is not read"
    elif case in ("missing key", "extra key", "misshapen", "nan", "chance"):
        state = dict(good)
        key = next(k for k in state if k.endswith("weight"))
        if case == "missing key":
            del state[key]
            needle = f"does not fit the architecture: missing: {key}"
        elif case == "extra key":
            state["head.extra"] = torch.zeros(3)
            needle = "does not fit the architecture: unexpected: head.extra"
        elif case == "misshapen":
            state[key] = torch.zeros(2, 2)
            needle = f"does not fit the architecture: misshapen: {key} (2, 2)"
        elif case == "nan":
            state[key] = state[key].clone()
            state[key][0, 0] = float("nan")
            needle = f"{key!r} holds NaN or infinite values"
        else:  # the normalization the weights carry is wrong: images arrive far outside the range they learned
            mean_key = next(k for k in state if k.endswith("mean"))
            state[mean_key] = state[mean_key] + 5.0
            needle = "the usual cause is the normalization"
        torch.save(state, bad)
    elif case == "list":
        torch.save([torch.zeros(1)], bad)
        needle = "holds list, not a state dict"
    elif case in ("garbage", "empty"):
        bad.write_bytes(b"hello world" if case == "garbage" else b"")
        needle = "is not a readable PyTorch file ("
    elif case == "not a file":
        bad = tmp_path / "none.pt"
        needle = "no such file"
    else:
        bad = tmp_path / "weights.pkl"
        bad.write_bytes(b"x")
        needle = "expected a state dict in a .safetensors or .pt or .pth or .bin file"
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "import", "--run", "x", *WHERE, "--member", f"erm={files / 'erm.pt'}",
                           "--member", f"mixup={bad}", "--out", str(out))  # fmt: skip
    assert_one_line_error(code, err, needle)
    assert not out.exists() and not marker.exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--member", "mixup=m.pt"], "--member needs erm=PATH"),
        (["--member", "erm=e.pt", "--member", "erm=f.pt"], "--member names a role more than once"),
        (["--member", "erm=e.pt", "--member", "bigger=f.pt"], "the role must be a method's name"),
        (["--member", "erm"], "expected ROLE=PATH"),
        (["--member", "erm=e.pt", "--member", "mixup=m.pt", "--mean", "0.5"], "--mean and --std go together"),
        (["--member", "erm=e.pt", "--member", "mixup=m.pt", "--source", "erm=x.pt"], "--source takes surrogate=PATH"),
        (
            ["--member", "erm=e.pt", "--member", "mixup=m.pt", "--mean", "0.5", "--std", "0.5"],
            "carry their normalization in their weights",
        ),
        (["--member", "erm=e.pt", "--member", "mixup=m.pt", "--normalized"], "leave out --mean/--std and --normalized"),
    ],
)
def test_bad_import_arguments_are_one_line(tmp_path, capsys, argv, needle):
    code, _, err = run_cli(capsys, "import", "--run", "x", *WHERE, *argv, "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "o").exists()


def test_an_architecture_is_one_the_suite_can_build(tmp_path, capsys, files):
    for arch, needle in (("torchvision:os", "torchvision has no classification model 'os'"),
                         ("nets/model.py", "--arch must be one of"),
                         ("torchvision:resnet18", "declare the normalization its weights expect")):  # fmt: skip
        code, _, err = run_cli(capsys, "import", "--run", "x", "--dataset", "digits", "--arch", arch, "--member",
                               f"erm={files / 'erm.pt'}", "--member", f"mixup={files / 'mixup.pt'}", "--out",
                               str(tmp_path / "o"), "--device", "cpu", *(["--normalized"] if arch == "torchvision:os"
                                                                         else []))  # fmt: skip
        assert_one_line_error(code, err, needle)
        assert not (tmp_path / "o").exists()


def test_run_on_an_imported_run_evaluates_it_and_trains_nothing(files, tmp_path, capsys, monkeypatch):
    from robustbench_mixup.settings import presets
    from robustbench_mixup.settings.presets import Preset

    attacks = (AttackConfig("fgsm", (0.0, 0.1)), AttackConfig("pgd", (0.1,), steps=2, mode="black"))
    tiny = Preset(name="tiny", dataset="mnist-5k", model="smallcnn", epochs=2, alpha=1.0, probe_pairs=50,
                  probe_lambdas=5, sweep_noise=(0.5,), sweep_alpha=(0.0, 4.0), sweep_epochs=2,
                  attacks=attacks)  # fmt: skip
    monkeypatch.setitem(presets.PRESETS, "tiny", tiny)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "import", "--run", "mine", *WHERE, "--member", f"erm={files / 'erm.pt'}",
                           "--member", f"mixup={files / 'mixup.pt'}", "--out", str(out))  # fmt: skip
    assert code == 0, err
    argv = ("run", "--preset", "tiny", "--run", "mine", "--out", str(out), "--device", "cpu", "--jobs", "1")
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "run 'mine' was imported" in err
    assert re.findall(r"\] (\w+) \.\.\.", err) == ["diagnose", "fgsm", "probe", "report"]  # no source: no black box
    with ResultsDB(Layout(out).database) as db:
        rows = db.attack_rows("mine")
        assert {(r["attack"], r["mode"]) for r in rows} == {("fgsm", "white")}
        assert db.epochs("mine") == [] and db.get_sweep("mine") is None  # nothing trained
    assert "mixup lowers white-box FGSM error" in stdout
    code, _, err = run_cli(capsys, *argv)
    assert code == 0 and err.count("done before, skipped") == 3, err


def test_a_torchvision_resnet18_on_cifar_from_its_binary_archive_is_imported_and_attacked(tmp_path, capsys):
    """The path a CIFAR user takes: the official binary archive on disk (read without pickle), a torchvision
    network's state dict, its normalization declared. A random-init network is at chance level: refused, naming
    the normalization, unless --force; kept, it is attacked in the white box and reported."""
    import torchvision

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, n in [*((f"data_batch_{i}.bin", 4) for i in range(1, 6)), ("test_batch.bin", 16)]:
        records = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], axis=1)
        (folder / name).write_bytes(records.astype(np.uint8).tobytes())
    torch.manual_seed(0)
    for role in ("erm", "mixup"):
        save_file(torchvision.models.resnet18(num_classes=10).state_dict(), str(tmp_path / f"{role}.safetensors"))
    argv = ["import", "--run", "tv", "--dataset", "cifar10", "--arch", "torchvision:resnet18", "--member",
            f"erm={tmp_path / 'erm.safetensors'}", "--member", f"mixup={tmp_path / 'mixup.safetensors'}",
            "--mean", "0.4914", "0.4822", "0.4465", "--std", "0.247", "0.243", "0.261",
            "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--device", "cpu"]  # fmt: skip
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "member 'erm' classifies", "the usual cause is the normalization", "--force")
    assert not (tmp_path / "out").exists()
    code, stdout, err = run_cli(capsys, *argv, "--force")
    assert code == 0, err
    assert "near chance (kept: --force)" in stdout
    where = ["--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--device", "cpu"]
    code, _, err = run_cli(capsys, "pgd", "--eps", "0.03", "--steps", "2", "--mode", "white", "--run", "tv", *where)
    assert code == 0, err
    with ResultsDB(Layout(tmp_path / "out").database) as db:
        rows = db.attack_rows("tv", outcomes=True)
    assert {r["model"] for r in rows} == {"erm", "mixup"} and all(len(r["correct"]) == 16 for r in rows)
    model, meta = checkpoints.load(Layout(tmp_path / "out").checkpoint("tv", "erm"))
    assert isinstance(model, Imported) and meta["imported"]["file"] == "erm.safetensors"
    code, _, err = run_cli(capsys, "report", "--run", "tv", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert "near chance, kept with --force" in (tmp_path / "out" / "reports" / "tv" / "index.html").read_text()


def test_the_usual_wrappers_of_a_state_dict_are_understood(files, tmp_path):
    state = read_state_dict(files / "erm.safetensors")
    for i, wrapped in enumerate([state, {"state_dict": state, "epoch": 3}, {"model_state_dict": state, "optimizer": {}},
                                 {"model": {f"_orig_mod.{k}": v for k, v in state.items()}},
                                 {f"module.{k}": v for k, v in state.items()}]):  # fmt: skip
        torch.save(wrapped, tmp_path / f"{i}.pt")
        found = read_state_dict(tmp_path / f"{i}.pt")
        assert found.keys() == state.keys() and all(torch.equal(found[k], state[k]) for k in state)
