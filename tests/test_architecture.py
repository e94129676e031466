"""What the orchestration layer promises: one layout, one config, one epoch driver, attacks as objects,
commands generated from a run's own settings, progress a person can follow."""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import sys

import pytest
import torch
from helpers import assert_one_line_error, run_cli
from torch import nn

from robustbench_mixup.attacks import engine
from robustbench_mixup.attacks import methods as attacks
from robustbench_mixup.attacks.engine import craft, evaluate_attack, score
from robustbench_mixup.attacks.methods import FGSM, IFGSM, fgsm, ifgsm
from robustbench_mixup.cli import parser as cli_parser
from robustbench_mixup.cli import text as cli_text
from robustbench_mixup.cli.verbs import method_params
from robustbench_mixup.settings import config
from robustbench_mixup.settings.config import ATTACKS, METHODS, TrainConfig
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.settings.sweeps import Job, SweepConfig
from robustbench_mixup.stages import attack as evaluation
from robustbench_mixup.stages.progress import EpochProgress, Progress
from robustbench_mixup.stages.sweep_corrupt import run_sweep
from robustbench_mixup.stages.train import train_run
from robustbench_mixup.store.database import ResultsDB

TINY = ["--dataset", "digits", "--model", "mlp", "--epochs", "1", "--device", "cpu"]


# --- settings without torch --------------------------------------------------------------------------


TORCH_FREE = ("settings", "verdicts", "report")  # the layers a report, a --help or a settings check needs


@pytest.mark.parametrize("layer", TORCH_FREE)
def test_every_module_of_the_torch_free_layers_imports_no_torch(layer):
    """Each module of the folder, imported alone in a fresh interpreter: no torch, and so no CUDA start-up."""
    import pkgutil

    import robustbench_mixup

    folder = f"{robustbench_mixup.__path__[0]}/{layer}"
    modules = [f"robustbench_mixup.{layer}.{m.name}" for m in pkgutil.iter_modules([folder])]
    assert len(modules) >= 3, modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "    assert 'torch' not in sys.modules, m\n"
        "print('ok')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_the_help_path_and_the_cli_package_import_no_torch():
    code = (
        "import sys\n"
        "import robustbench_mixup, robustbench_mixup.cli, robustbench_mixup.cli.parser\n"
        "robustbench_mixup.cli.parser.build_parser().format_help()\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_nothing_below_the_stages_imports_a_stage_and_no_stage_imports_the_report():
    """The layers read top to bottom: an import never reaches a later folder of this order."""
    import ast
    from pathlib import Path

    import robustbench_mixup

    order = ["settings", "learning", "measures", "attacks", "store", "stages", "verdicts", "report", "cli"]
    root = Path(robustbench_mixup.__path__[0])
    seen = 0
    for layer in order:
        for path in (root / layer).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("robustbench_mixup."):
                    target = node.module.split(".")[1]
                    seen += 1
                    if target in order:
                        assert order.index(target) <= order.index(layer), (path.name, node.module)
                    if layer == "stages":
                        assert target != "report", (path.name, node.module)
    assert seen > 100


def test_the_attack_registry_and_the_attack_types_agree_and_the_cli_reads_the_registry():
    assert set(ATTACKS) == set(attacks.ATTACK_TYPES)
    for name, kind in attacks.ATTACK_TYPES.items():
        assert kind.name == name == ATTACKS[name].name
    commands = cli_parser.build_parser()._subparsers._group_actions[0].choices
    for name, info in ATTACKS.items():
        assert info.subcommand in commands
        help_text = commands[info.subcommand].format_help()
        steps = "--queries" if name == "square" else "--steps"  # a search counts queries
        assert info.label in help_text and (steps in help_text) == info.iterative
        for option in info.options:  # each setting the attack object takes is an option of its command
            flag = {"seed": None, "step_size": "--step-size", "early_stop": "--early-stop", "steps": steps}.get(
                option, f"--{option}"
            )
            assert flag is None or flag in help_text, (name, option)
        args = cli_parser.build_parser().parse_args(
            [info.subcommand, "--eps", "0.1", *(["--loss", info.loss] if info.loss != "ce" else [])]
        )
        assert config.attack_named(args.attack, getattr(args, "loss", "ce")) == name


def test_cli_defaults_are_the_dataclass_defaults():
    args = cli_parser.build_parser().parse_args(["train"])
    d = TrainConfig()
    assert (args.dataset, args.model, args.epochs, args.seed, args.batch_size, args.lr) == (
        d.dataset, d.model, d.epochs, d.seed, d.batch_size, d.lr,
    )  # fmt: skip
    assert method_params(args) == {m: d.param(m) for m, info in METHODS.items() if info.param is not None}
    assert TrainConfig().with_params(method_params(args)) == d
    args = cli_parser.build_parser().parse_args(["ifgsm", "--eps", "0.1"])
    assert args.steps == ATTACKS["ifgsm"].default_steps and args.backend == "native" and args.mode == "both"


def test_sweep_config_checks_every_job_with_the_training_checks():
    with pytest.raises(UsageError, match="--alpha must be ≥ 0"):
        SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0, -1.0), epochs=1).validate()
    with pytest.raises(UsageError, match="--dropout must be in"):
        SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0,), dropout=(0.0, 1.5), epochs=1).validate()
    with pytest.raises(UsageError, match="unknown dataset"):
        SweepConfig(dataset="svhn", model="mlp", noise=(0.5,), alpha=(0.0,), epochs=1).validate()
    assert Job(0.5, 8.0, 0.0, 0).describe() == "noise 50%, α 8, seed 0"
    assert Job(0.2, 0.0, 0.5, 3).describe() == "noise 20%, α 0, dropout 0.5, seed 3"


# --- one layout ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["sweeps", "Sweeps", "results.sqlite", "results.sqlite-journal", "compare-a-vs-b", "../../escape", ".x", ""]
)
def test_reserved_and_unsafe_names_never_become_paths(tmp_path, name):
    layout = Layout(tmp_path)
    for build in (layout.run_dir, layout.report, layout.attacks_dir, layout.run_json):
        with pytest.raises(UsageError):
            build(name)


@pytest.mark.parametrize("name", ["sweeps", "results.sqlite"])
def test_a_run_named_like_a_layout_folder_is_refused_before_anything_is_written(capsys, tmp_path, name):
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, "train", *TINY, "--run", name, "--out", str(out))
    assert_one_line_error(code, err, "is reserved")
    assert not out.exists()


# --- one epoch driver ------------------------------------------------------------------------------------


def test_sweep_batch_larger_than_the_data_is_one_line_before_anything_is_written(capsys, tmp_path):
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, "sweep", "corrupt", *TINY, "--noise", "0.5", "--alpha", "0", "--batch-size", "2000",
                           "--name", "s", "--out", str(out))  # fmt: skip
    assert_one_line_error(code, err, "--batch-size 2000 exceeds the 1438 training examples")
    assert not out.exists()


@pytest.mark.slow
def test_train_and_sweep_share_one_epoch_driver(tmp_path):
    """A sweep job without noise is the train run's member: the same weights, so the same test error per epoch."""
    cfg = TrainConfig(dataset="digits", model="mlp", epochs=3, alpha=1.0, seed=5, batch_size=64)
    train_run(cfg, run="t", out=tmp_path, device="cpu", members=("erm", "mixup"))
    sweep = SweepConfig(dataset="digits", model="mlp", noise=(0.0,), alpha=(0.0, 1.0), epochs=3, seeds=(5,),
                        batch_size=64)  # fmt: skip
    result = run_sweep(sweep, name="s", out=tmp_path, device="cpu")
    with ResultsDB(Layout(tmp_path).database) as db:
        epochs = db.epochs("t")
    for job in result.jobs:
        member = "erm" if job["alpha"] == 0 else "mixup"
        train_acc = [e["test_acc"] for e in epochs if e["model"] == member]
        sweep_acc = [1 - h["test_err"] for h in job["history"]]
        assert sweep_acc == pytest.approx(train_acc, abs=1e-12)


# --- attacks as objects ----------------------------------------------------------------------------------


def _linear() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(40, 1, 4, 4, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_attack_objects_take_their_settings_once_and_eps_at_call_time():
    model, x, y = _linear()
    assert torch.equal(FGSM()(model, x, y, 0.1), fgsm(model, x, y, 0.1))
    assert torch.equal(IFGSM(steps=4)(model, x, y, 0.1), ifgsm(model, x, y, 0.1, steps=4))
    assert IFGSM(steps=4).size_for(0.1) == pytest.approx(0.025) and IFGSM(4, 0.01).size_for(0.1) == 0.01
    assert FGSM().steps == 1 and FGSM().size_for(0.3) == 0.3
    with pytest.raises(ValueError, match="steps"):
        IFGSM(steps=0)
    with pytest.raises(ValueError, match="step_size"):
        IFGSM(steps=3, step_size=-1.0).size_for(0.1)
    assert IFGSM(steps=3, step_size=0.0).size_for(0.0) == 0.0  # ε = 0 needs no step


@pytest.mark.parametrize("attack", [FGSM(), IFGSM(steps=3)])
def test_crafting_then_scoring_counts_what_the_fused_loop_counts(attack):
    model, x, y = _linear()
    eps = [0.0, 0.05, 0.2]
    sets = craft(attack, model, x, y, eps, batch_size=16)
    assert [s.shape for s in sets] == [x.shape] * 3
    for e, s in zip(eps, sets, strict=True):
        assert (s - x).abs().max() <= e + 1e-7 and s.min() >= 0 and s.max() <= 1
    apart = score({"m": model}, x, y, sets, batch_size=16)
    fused = evaluate_attack(model, {"m": model}, x, y, eps, attack=attack, batch_size=16)
    assert apart.top1 == fused.top1 and apart.top5 == fused.top5
    assert apart.top1["m"][0] == len(y)  # ε = 0: every label is the model's own prediction


# --- progress and output ---------------------------------------------------------------------------------


class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_progress_in_a_log_is_plain_lines_with_counts_rate_and_time_left():
    log = _Log()
    with Progress("fgsm", "images", every=0, stream=log) as bar:
        bar.start(10)
        for _ in range(4):
            bar.update(2)
    lines = log.getvalue().splitlines()
    assert len(lines) == 5 and "fgsm: 2/10 images" in lines[0] and "left" in lines[0]
    assert re.search(r"fgsm: 8 images in \d+s", lines[-1])
    log = _Log()
    with EpochProgress(total=2, desc="train", stream=log) as bar:
        bar.update("erm", 1, {"test_acc": 0.5, "train_loss": 1.0, "train_acc": 0.4, "seconds": 0.1})
    assert "epoch   1 erm" in log.getvalue() and "[1/2," in log.getvalue()


def test_json_numbers_are_rounded_to_six_significant_digits():
    assert cli_text.rounded(0.06699999999999995) == 0.067
    assert cli_text.rounded({"a": [1.23456789e-5, 2], "b": "x"}) == {"a": [1.23457e-05, 2], "b": "x"}


@pytest.mark.parametrize(
    "argv, target, says",
    [
        (["train", *TINY], "robustbench_mixup.stages.train.train_run", "--resume"),
        (["fgsm", "--eps", "0.1"], "robustbench_mixup.stages.attack.evaluate_run", "run the same command again"),
        (["probe"], "robustbench_mixup.stages.probe.probe_run", "run the same command again"),
        (["sweep", "corrupt", *TINY, "--noise", "0.5", "--alpha", "0", "--name", "s"],
         "robustbench_mixup.stages.sweep_corrupt.run_sweep", "finished jobs are kept"),
    ],
)  # fmt: skip
def test_ctrl_c_says_how_to_go_on_for_that_command(capsys, monkeypatch, tmp_path, argv, target, says):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path))
    assert code == 130 and says in err
    if says != "--resume":
        assert "--resume" not in err


# --- commands generated from the run's own settings -----------------------------------------------------


@pytest.mark.slow
def test_every_suggested_command_run_as_printed_fills_its_stage(capsys, tmp_path):
    out = tmp_path / "o"
    assert run_cli(capsys, "train", *TINY, "--run", "d0", "--batch-size", "64", "--out", str(out))[0] == 0
    from robustbench_mixup.report.pages import build
    from robustbench_mixup.verdicts.evidence import collect

    html = build(out=out, run="d0").read_text()
    commands = collect(out, "d0")["commands"]
    assert "--dataset digits --model mlp" in commands["sweep"] and "--batch-size 64" in commands["sweep"]
    for stage in ("fgsm", "ifgsm", "probe", "sweep"):
        assert commands[stage].replace("'", "&#39;") in html or commands[stage] in html, stage
    for stage, command in commands.items():
        words = shlex.split(command)
        assert words[0] == "robust-eval"
        code, _, err = run_cli(capsys, *words[1:], "--device", "cpu")
        assert code == 0, (stage, err)
    html = build(out=out, run="d0").read_text()
    assert "Not run yet" not in html and "not measured" not in html
    with ResultsDB(Layout(out).database) as db:
        sweep = db.get_sweep("d0")
    assert (sweep["config"]["dataset"], sweep["config"]["model"], sweep["config"]["batch_size"]) == (
        "digits",
        "mlp",
        64,
    )


def test_attack_json_has_no_source_in_the_white_box_and_rounded_numbers(capsys, tmp_path):
    train_run(TrainConfig(dataset="digits", model="mlp", epochs=1, batch_size=64), run="d", out=tmp_path,
              device="cpu", members=("erm", "mixup"))  # fmt: skip
    code, stdout, err = run_cli(capsys, "fgsm", "--eps", "0.05", "--mode", "white", "--out", str(tmp_path),
                                "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert "black box" not in stdout.splitlines()[0] and "surrogate" not in stdout
    code, stdout, err = run_cli(capsys, "fgsm", "--eps", "0.05", "--mode", "white", "--json", "--out", str(tmp_path),
                                "--device", "cpu")  # fmt: skip
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["model"] for r in records] == ["erm", "mixup"] and all("source" not in r for r in records)
    assert not re.search(r"\d\.\d{8,}", stdout), stdout


def test_evaluation_has_no_stand_in_epsilons(monkeypatch):
    """Scoring ready-made sets never goes through the attack engine with made-up ε."""
    calls = []
    real = engine.evaluate_attack
    monkeypatch.setattr(engine, "evaluate_attack", lambda *a, **k: calls.append(k) or real(*a, **k))
    model, x, y = _linear()
    cfg = config.AttackConfig("fgsm", (0.0, 0.1), mode="white").validate()
    evaluation.evaluate_models({"m": model}, x, y, cfg, black_sets=[x, x])
    assert len(calls) == 1 and calls[0]["attack"].name == "fgsm"  # the white box only


def test_every_public_name_imports_from_the_path_docs_api_gives():
    """docs/API.md's table "where each name lives": each name imports from its short path, and is the object
    defined in the file the table names."""
    import importlib
    from pathlib import Path

    table = (Path(__file__).parent.parent / "docs" / "API.md").read_text().split("## Where each name lives")[1]
    rows = [line.split("|")[1:4] for line in table.split("\n\n")[1].splitlines()[2:]]
    assert len(rows) >= 10
    checked = 0
    for names, where, defined in rows:
        path = re.findall(r"`([\w.]+)`", where)[0]
        source = re.findall(r"`([\w/.]+)\.py`", defined)[0].replace("/", ".")
        module, home = importlib.import_module(path), importlib.import_module(source)
        for name in re.findall(r"`(\w+)`", names):
            assert getattr(module, name) is getattr(home, name), (name, path, source)
            checked += 1
    assert checked >= 30


def test_no_two_modules_have_names_that_differ_only_in_their_ending():
    """A stage is named after its verb, a primitive after what it computes: no `probe`/`probes`/`probing`,
    `diagnose`/`diagnostics`, `train`/`training`, and no one name in two folders (the top-level faces aside)."""
    from pathlib import Path

    import robustbench_mixup

    def stem(name: str) -> str:  # the word without a grammatical ending
        for ending in ("tics", "ing", "ion", "es", "s", "e"):
            if name.endswith(ending) and len(name) - len(ending) >= 3:
                return name[: -len(ending)]
        return name

    root = Path(robustbench_mixup.__path__[0])
    modules = sorted(f"{p.parent.name}/{p.stem}" for p in root.glob("*/*.py") if p.stem != "__init__")
    assert len(modules) >= 40
    seen: dict[str, str] = {}
    for module in modules:
        word = stem(module.split("/")[1])
        assert word not in seen, f"{seen[word]}.py and {module}.py"
        seen[word] = module
