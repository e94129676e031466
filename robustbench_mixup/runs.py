"""A trained run on disk: find it (by name, or the latest), read its configuration, load its models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoints
from .errors import UsageError
from .results import ResultsDB, database_path
from .train import run_dir


def resolve_run(out: str | Path, run: str | None) -> tuple[str, dict[str, Any]]:
    """(name, config) of `run` under `out`, or of the latest trained run when `run` is None."""
    out = Path(out)
    path = database_path(out)
    if not path.is_file():
        raise UsageError(
            f"no trained run under {str(out)!r}: train one first with 'robust-eval train' (or 'robust-eval run')"
        )
    with ResultsDB(path) as db:
        name = run if run is not None else db.latest_run("train")
        if name is None:
            raise UsageError(
                f"no trained run under {str(out)!r}: train one first with 'robust-eval train' (or 'robust-eval run')"
            )
        record = db.get_run(name)
        if record is None or not (run_dir(out, name) / "erm.safetensors").is_file():
            names = [r[0] for r in db.conn.execute("SELECT name FROM runs WHERE kind='train' ORDER BY created")]
            raise UsageError(f"unknown run {name!r} under {str(out)!r}: known runs are {', '.join(names)}")
    return name, record["config"]


def load_members(
    out: str | Path, run: str, names: tuple[str, ...], device: torch.device
) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]]]:
    """The run's models `names` (in eval mode on `device`) and their checkpoint metadata."""
    models, metas = {}, {}
    for name in names:
        models[name], metas[name] = checkpoints.load(run_dir(Path(out), run) / f"{name}.safetensors", device=device)
    return models, metas
