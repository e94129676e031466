"""`robust-eval import --arch timm:NAME | MODULE:FUNCTION`: a timm network, and a network the user's own code builds,
which is imported only when the user names it (never because a file says so)."""

import sys

import pytest
import torch
from helpers import assert_one_line_error, run_cli
from safetensors.torch import save_file
from torch import nn

from robustbench_mixup.data import load_dataset
from robustbench_mixup.learning import checkpoints, zoo
from robustbench_mixup.learning.models import ModelSpec
from robustbench_mixup.learning.zoo import FACTORIES_ENV, Imported
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.store.database import ResultsDB

FACTORY = """
from pathlib import Path
from torch import nn

with open(Path(__file__).with_suffix(".log"), "a") as log:  # a trace of every import of this module
    log.write("imported\\n")


def build(num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
"""


@pytest.fixture
def fresh_process(monkeypatch, tmp_path):
    """As a new process: no factory named yet, none in the environment, the user's folder the current one."""
    monkeypatch.setattr(zoo, "_named", set())
    monkeypatch.delenv(FACTORIES_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def _linear_weights(folder, seed):
    """A linear classifier of digits trained by plain PyTorch, its state dict saved as a user would."""
    data = load_dataset("digits")
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(data.train_images), data.train_labels).backward()
        opt.step()
    path = folder / f"linear{seed}.pt"
    torch.save(model.state_dict(), path)
    return path


def _forget(module):
    sys.modules.pop(module, None)
    zoo._named.clear()


def test_a_users_factory_is_imported_when_named_and_never_because_a_file_names_it(fresh_process, capsys, monkeypatch):
    folder, module = fresh_process, "userzoo_named"
    (folder / f"{module}.py").write_text(FACTORY)
    log = folder / f"{module}.log"
    members = ["--member", f"erm={_linear_weights(folder, 0)}", "--member", f"mixup={_linear_weights(folder, 1)}"]
    where = ["--out", str(folder / "out"), "--device", "cpu"]
    code, stdout, err = run_cli(capsys, "import", "--run", "own", "--dataset", "digits", "--arch", f"{module}:build",
                                "--normalized", *members, *where)  # fmt: skip
    assert code == 0, err
    assert f"export {FACTORIES_ENV}={module}:build" in stdout and log.read_text() == "imported\n"
    model, meta = checkpoints.load(Layout(folder / "out").checkpoint("own", "erm"))
    assert isinstance(model, Imported) and meta["model"]["kwargs"]["arch"] == f"{module}:build"

    _forget(module)  # a later command, in a new process: the run names the factory, the user has not
    log.unlink()
    code, _, err = run_cli(capsys, "pgd", "--run", "own", "--eps", "0.1", "--steps", "3", "--mode", "white", *where)
    assert_one_line_error(code, err, f"your code '{module}:build'", f"set {FACTORIES_ENV}={module}:build")
    assert not log.exists() and module not in sys.modules  # not imported
    with ResultsDB(Layout(folder / "out").database) as db:
        assert db.attack_rows("own") == []

    monkeypatch.setenv(FACTORIES_ENV, f"other:thing, {module}:build")  # the user names it
    code, _, err = run_cli(capsys, "pgd", "--run", "own", "--eps", "0.1", "--steps", "3", "--mode", "white", *where)
    assert code == 0, err
    assert log.read_text() == "imported\n"
    with ResultsDB(Layout(folder / "out").database) as db:
        rows = db.attack_rows("own", outcomes=True)
    assert {r["model"] for r in rows} == {"erm", "mixup"}
    assert all(r["clean_top1"] > 0.8 and r["top1"] <= r["clean_top1"] for r in rows)


def test_a_checkpoint_naming_a_module_makes_nothing_import(fresh_process):
    """A file can say `os:system`; nothing named only by a file is imported or called."""
    folder, module = fresh_process, "userzoo_forged"
    (folder / f"{module}.py").write_text(FACTORY)
    zoo.trust_factory(f"{module}:build")
    model = Imported(f"{module}:build", [1, 8, 8], 10, [0.0], [1.0])
    _forget(module)
    for arch in ("os:system", f"{module}:build"):
        model.spec = ModelSpec("imported", {**model.spec.kwargs, "arch": arch})
        checkpoints.save(model, folder / "forged.safetensors", metadata={"run": "x"})
        (folder / f"{module}.log").unlink(missing_ok=True)
        with pytest.raises(ValueError, match=f"which robust-eval imports only when you name it: set {FACTORIES_ENV}"):
            checkpoints.load(folder / "forged.safetensors")
        assert not (folder / f"{module}.log").exists() and module not in sys.modules


@pytest.mark.parametrize(
    ("source", "arch", "needle"),
    [
        (None, "userzoo_absent:build", "cannot import 'userzoo_absent' (ModuleNotFoundError"),
        ("raise RuntimeError('broken at import')", "userzoo_raises:build", "RuntimeError: broken at import"),
        ("def other(): pass", "userzoo_nofn:build", "module 'userzoo_nofn' has no function 'build'"),
        ("def build(): return 3", "userzoo_int:build", "the factory returned a int, not a torch.nn.Module"),
        ("def build(num_classes): raise ValueError('no such width')", "userzoo_fails:build",
         "the factory raised ValueError: no such width"),
        ("import torch\ndef build(): return torch.nn.Linear(3, 3)", "userzoo_shape:build", "erm"),
    ],
)  # fmt: skip
def test_a_factory_that_cannot_give_the_network_is_one_line_and_writes_nothing(fresh_process, capsys, source, arch,
                                                                               needle):  # fmt: skip
    folder = fresh_process
    module = arch.split(":")[0]
    if source is not None:
        (folder / f"{module}.py").write_text(source + "\n")
    weights = _linear_weights(folder, 0)
    code, _, err = run_cli(capsys, "import", "--run", "own", "--dataset", "digits", "--arch", arch, "--normalized",
                           "--member", f"erm={weights}", "--member", f"mixup={weights}", "--out",
                           str(folder / "out"), "--device", "cpu")  # fmt: skip
    assert_one_line_error(code, err, needle)
    assert not (folder / "out").exists()
    sys.modules.pop(module, None)


def test_a_timm_network_is_imported_and_attacked(tmp_path, capsys):
    timm = pytest.importorskip("timm")  # the [zoo] extra, which the test install includes
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=10, in_chans=1)
    for role in ("erm", "mixup"):
        save_file(net.state_dict(), str(tmp_path / f"{role}.safetensors"))
    argv = ["import", "--run", "tm", "--dataset", "digits", "--arch", "timm:resnet10t", "--mean", "0.3", "--std",
            "0.37", "--member", f"erm={tmp_path / 'erm.safetensors'}", "--member",
            f"mixup={tmp_path / 'mixup.safetensors'}", "--out", str(tmp_path / "out"), "--device", "cpu",
            "--force"]  # fmt: skip
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "run tm: digits, timm:resnet10t" in stdout
    model, _ = checkpoints.load(Layout(tmp_path / "out").checkpoint("tm", "erm"))
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), net.eval()((x - 0.3) / 0.37))  # the same network, behind its normalization
    code, _, err = run_cli(capsys, "fgsm", "--run", "tm", "--eps", "0.1", "--mode", "white", "--out",
                           str(tmp_path / "out"), "--device", "cpu")  # fmt: skip
    assert code == 0, err
    argv[argv.index("timm:resnet10t")] = "timm:no_such_net"
    code, _, err = run_cli(capsys, *argv[:2], "tm2", *argv[3:])
    assert_one_line_error(code, err, "timm has no model 'no_such_net'")


def test_without_timm_the_line_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    with pytest.raises(ValueError, match=r"pip install 'robust-eval\[zoo\]'"):
        zoo.check_arch("timm:resnet18")
