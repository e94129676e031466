"""A trained run on disk: find it (by name, or the latest), read its configuration, load its models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from robustbench_mixup.learning.data import Dataset

from robustbench_mixup.settings.config import TrainConfig
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.imported import check_imported, is_imported
from robustbench_mixup.settings.layout import Layout, check_run_name
from robustbench_mixup.store.database import ResultsDB


def resolve_run(out: str | Path, run: str | None) -> tuple[str, dict[str, Any]]:
    """(name, config) of `run` under `out`, or of the latest trained run when `run` is None."""
    layout = Layout(out)
    if run is not None:
        check_run_name(run)
    if not layout.database.is_file():
        raise UsageError(
            f"no trained run under {str(layout.root)!r}: train one first with 'robust-eval train' "
            "(or 'robust-eval run'), or import models with 'robust-eval import'"
        )
    with ResultsDB(layout.database) as db:
        name = run if run is not None else db.latest_run(("train", "import"))
        if name is None:
            raise UsageError(
                f"no trained run under {str(layout.root)!r}: train one first with 'robust-eval train' "
                "(or 'robust-eval run'), or import models with 'robust-eval import'"
            )
        record = db.get_run(name)
        group = db.get_group(name) if record is None else None
        if group is not None:
            raise UsageError(f"{name!r} is a group of seeds ({', '.join(group)}): give one of its runs, e.g. --run "
                             f"{group[0]}; 'robust-eval report --run {name}' reports the group")  # fmt: skip
        if record is None:
            names = [
                r[0]
                for r in db.conn.execute("SELECT name FROM runs WHERE kind IN ('train', 'import') ORDER BY created")
            ]
            known = f"known runs are {', '.join(names)}" if names else "no run is recorded there"
            raise UsageError(f"unknown run {name!r} under {str(layout.root)!r}: {known}")
        if not layout.checkpoint(name, "erm").is_file():
            raise UsageError(
                f"run {name!r} is recorded under {str(layout.root)!r} but its checkpoints are missing from "
                f"{str(layout.run_dir(name))!r}: restore them, or train it again with 'robust-eval train ... --resume'"
            )
    try:
        if is_imported(record["config"]):
            check_imported(record["config"])
        elif TrainConfig(**record["config"]).validate().to_dict() != record["config"]:
            raise UsageError("settings are missing")  # every field is recorded: a partial one was cut
    except (TypeError, UsageError) as exc:
        raise UsageError(
            f"the stored configuration of run {name!r} in {str(layout.database)!r} is damaged ({exc}): "
            "restore the database from a backup, or train the run again under another name"
        ) from None
    return name, record["config"]


def methods_of(config: dict[str, Any]) -> tuple[str, ...]:
    """The methods a run trained (or imported), from its stored settings (checked by `resolve_run`)."""
    return tuple(config["methods"]) if is_imported(config) else TrainConfig(**config).methods


def load_members(
    out: str | Path, run: str, names: tuple[str, ...], device: torch.device, config: dict[str, Any] | None = None
) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]]]:
    """The run's models `names` (in eval mode on `device`) and their checkpoint metadata. With the run's stored
    `config`, each checkpoint must say it is that member of that run, trained on the run's dataset: a checkpoint
    copied in from another run is refused with one line, as a foreign `--source` is."""
    from robustbench_mixup.learning import (
        checkpoints,  # torch only where models are loaded: the report finds runs without it
    )

    layout = Layout(out)
    models, metas = {}, {}
    for name in names:
        path = layout.checkpoint(run, name)
        models[name], metas[name] = checkpoints.load(path, device=device)
        if config is None:
            continue
        meta = metas[name]
        found = (meta.get("run"), meta.get("member"), (meta.get("dataset") or {}).get("name"))
        if found != (run, name, config["dataset"]):
            raise UsageError(
                f"checkpoint {str(path)!r} is not member {name!r} of run {run!r} on {config['dataset']}: it says "
                f"run {found[0]!r}, member {found[1]!r}, dataset {found[2]!r}; restore the run's own checkpoint, or "
                "train the run again"
            )
    return models, metas


@dataclass
class OpenRun:
    """A trained run, checked and loaded: what every stage over a run starts from."""

    name: str
    config: dict[str, Any]  # its stored training settings, checked by `resolve_run`
    models: dict[str, nn.Module]  # every method's model, in eval mode on `device`
    metas: dict[str, dict[str, Any]]  # their checkpoints' metadata
    data: Dataset  # its dataset, split (and subset) as it was trained
    device: torch.device

    @property
    def seed(self) -> int:
        return int(self.config["seed"])


def open_run(out: str | Path, run: str | None, *, device: str = "auto", data_root: str | Path | None = None) -> OpenRun:
    """The one way a stage opens `run` (default: the latest) under `out`: its settings, its methods' models and its
    dataset, each through its checked boundary; nothing is written."""
    from robustbench_mixup.learning.data import load_dataset  # torch only here: the report finds runs without it
    from robustbench_mixup.learning.devices import resolve_device

    name, config = resolve_run(out, run)
    if config.get("dataset_sha256"):  # a test set the user brought: still the file the run was made on
        from robustbench_mixup.learning.user_data import file_sha256

        path = Path(config["dataset"].split(":", 1)[1])
        if not path.exists() or file_sha256(path) != config["dataset_sha256"]:
            state = "is missing" if not path.exists() else f"has changed since run {name!r} was imported on it"
            raise UsageError(f"dataset {config['dataset']} {state} (its SHA-256 is recorded): restore it, or import "
                             "the models again under another --run")  # fmt: skip
    dev = resolve_device(device)
    models, metas = load_members(out, name, methods_of(config), dev, config)
    data = load_dataset(config["dataset"], root=data_root, split_seed=config.get("split_seed", 0),
                        train_n=config.get("train_n"))  # fmt: skip
    return OpenRun(name, config, models, metas, data, dev)


RUN_JSON_MAX_BYTES = 1 << 20  # a run.json is a few hundred bytes


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def read_run_json(layout: Layout, run: str) -> dict[str, Any] | None:
    """The run's `checkpoints/RUN/run.json` (written by `train.train_run`), validated; None when absent.

    The one place it is read back: anything but a UTF-8 JSON object whose `dataset` holds `name` (a
    string), `n_train`/`n_test` (non-negative ints) and `image_shape` (3 positive ints) raises UsageError."""
    path = layout.run_json(run)
    if not path.exists() and not path.is_symlink():
        return None

    def corrupt(what: str) -> UsageError:
        return UsageError(
            f"{path} is corrupt ({what}): delete it and run 'robust-eval train --run {run} ... --resume' "
            "with the run's settings to rewrite it"
        )

    try:
        with open(path, "rb") as fh:
            raw = fh.read(RUN_JSON_MAX_BYTES + 1)
    except OSError as exc:
        raise corrupt(f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > RUN_JSON_MAX_BYTES:
        raise corrupt(f"larger than {RUN_JSON_MAX_BYTES} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise corrupt("not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise corrupt(f"not JSON: {' '.join(str(exc).split())[:100]}") from None
    if not isinstance(doc, dict):
        raise corrupt(f"a JSON {type(doc).__name__}, expected an object")
    ds = doc.get("dataset")
    if not isinstance(ds, dict):
        raise corrupt("'dataset' is not an object")
    if not isinstance(ds.get("name"), str):
        raise corrupt("'dataset.name' is not a string")
    for key in ("n_train", "n_test"):
        n = ds.get(key)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**63:
            raise corrupt(f"'dataset.{key}' is {json.dumps(n)[:40]}, expected a non-negative integer")
    shape = ds.get("image_shape")
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(d, int) and not isinstance(d, bool) and 0 < d < 2**31 for d in shape)
    ):
        raise corrupt(f"'dataset.image_shape' is {json.dumps(shape)[:40]}, expected 3 positive integers")
    return doc
