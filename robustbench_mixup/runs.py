"""A trained run on disk: find it (by name, or the latest), read its configuration, load its models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

from .errors import UsageError
from .layout import Layout
from .results import ResultsDB


def resolve_run(out: str | Path, run: str | None) -> tuple[str, dict[str, Any]]:
    """(name, config) of `run` under `out`, or of the latest trained run when `run` is None."""
    layout = Layout(out)
    if not layout.database.is_file():
        raise UsageError(
            f"no trained run under {str(layout.root)!r}: train one first with 'robust-eval train' "
            "(or 'robust-eval run')"
        )
    with ResultsDB(layout.database) as db:
        name = run if run is not None else db.latest_run("train")
        if name is None:
            raise UsageError(
                f"no trained run under {str(layout.root)!r}: train one first with 'robust-eval train' "
                "(or 'robust-eval run')"
            )
        record = db.get_run(name)
        if record is None or not layout.checkpoint(name, "erm").is_file():
            names = [r[0] for r in db.conn.execute("SELECT name FROM runs WHERE kind='train' ORDER BY created")]
            raise UsageError(f"unknown run {name!r} under {str(layout.root)!r}: known runs are {', '.join(names)}")
    return name, record["config"]


def load_members(
    out: str | Path, run: str, names: tuple[str, ...], device: torch.device
) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]]]:
    """The run's models `names` (in eval mode on `device`) and their checkpoint metadata."""
    from . import checkpoints  # torch only where models are loaded: the report finds runs without it

    layout = Layout(out)
    models, metas = {}, {}
    for name in names:
        models[name], metas[name] = checkpoints.load(layout.checkpoint(run, name), device=device)
    return models, metas
