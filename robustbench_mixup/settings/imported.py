"""The settings of `robust-eval import`: models trained elsewhere, made into a run (no torch here).

An imported run has members named by their role (`erm`, the baseline every claim compares against, and one or
more of the other methods' names), each from a weights file; optionally a black-box source (`surrogate`). Its
stored configuration (`ImportConfig.record`) says that it was imported, so no later stage pairs its models by
initial weights or batches: only by the test examples they are all scored on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from robustbench_mixup.settings.config import BASELINE, METHODS, SURROGATE, DatasetName, ModelName
from robustbench_mixup.settings.errors import UsageError

TORCHVISION, TIMM = "torchvision:", "timm:"  # a library's classification model by its name
# The user's own factory, MODULE:FUNCTION (mypkg.nets:build): imported only when the user names it (`learning.zoo`)
FACTORY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", re.ASCII)
NPZ, FOLDER = "npz:", "folder:"  # a test set the user brings (`learning.user_data`)


@dataclass(frozen=True)
class ImportConfig:
    """One import: the dataset the models are judged on, their architecture, and their weights files."""

    dataset: str
    arch: str  # one of the package's networks, torchvision:NAME, timm:NAME or the user's MODULE:FUNCTION
    members: tuple[tuple[str, str], ...]  # (role, path of its weights): erm and at least one other method
    source: str | None = None  # the weights of the black-box source (member 'surrogate'); None: white box only
    mean: tuple[float, ...] | None = None  # the normalization the models expect, put inside each model
    std: tuple[float, ...] | None = None
    normalized: bool = False  # the models normalize their inputs themselves: they take [0, 1] images as they are
    force: bool = False  # keep a model whose clean accuracy is near chance level

    def validate(self) -> ImportConfig:
        brought = isinstance(self.dataset, str) and any(self.dataset.startswith(p) and len(self.dataset) > len(p)
                                                           for p in (NPZ, FOLDER))  # fmt: skip
        if not brought:
            DatasetName.check(self.dataset, "dataset")
        if not is_arch(self.arch):
            raise UsageError(f"--arch must be one of {', '.join(ModelName.values())}, torchvision:NAME, timm:NAME "
                             f"or your factory MODULE:FUNCTION, got {self.arch!r}")  # fmt: skip
        roles = [role for role, _ in self.members]
        for role, path in self.members:
            if role not in METHODS:
                raise UsageError(f"--member {role}=…: the role must be a method's name ({', '.join(METHODS)}), "
                                 f"got {role!r}")  # fmt: skip
            if not path:
                raise UsageError(f"--member {role}= names no file")
        if len(set(roles)) != len(roles):
            raise UsageError(f"--member names a role more than once: {' '.join(roles)}")
        if BASELINE not in roles or len(roles) < 2:
            raise UsageError(f"--member needs {BASELINE}=PATH (every claim compares against it) and at least one "
                             "other method's model")  # fmt: skip
        if self.source is not None and not self.source:
            raise UsageError(f"--source {SURROGATE}= names no file")
        if (self.mean is None) != (self.std is None):
            raise UsageError("--mean and --std go together: one number per channel each")
        if self.normalized and self.mean is not None:
            raise UsageError("give either --mean/--std (the normalization to put inside the models) or --normalized "
                             "(they normalize themselves), not both")  # fmt: skip
        if self.arch in ModelName.values() and (self.normalized or self.mean is not None):
            raise UsageError(f"--arch {self.arch} is one of the package's networks, which carry their normalization "
                             "in their weights: leave out --mean/--std and --normalized")  # fmt: skip
        if self.arch not in ModelName.values() and self.mean is None and not self.normalized:
            raise UsageError(f"--arch {self.arch}: declare the normalization its weights expect with --mean M … --std "
                             "S … (one number per channel), or --normalized if the model normalizes its [0, 1] "
                             "input itself")  # fmt: skip
        for name, values in (("--mean", self.mean), ("--std", self.std)):
            if values is not None and not (values and all(math.isfinite(v) for v in values)):
                raise UsageError(f"{name} needs finite numbers, one per channel, got {list(values)}")
        if self.std is not None and not all(v > 0 for v in self.std):
            raise UsageError(f"--std must be > 0, got {list(self.std)}")
        return self

    @property
    def methods(self) -> tuple[str, ...]:
        """The roles, in `METHODS` order (erm first), as a trained run lists its methods."""
        roles = {role for role, _ in self.members}
        return tuple(m for m in METHODS if m in roles)

    def paths(self) -> dict[str, str]:
        """Member -> its weights file, the source as `surrogate`."""
        return {**dict(self.members), **({SURROGATE: self.source} if self.source is not None else {})}


def is_arch(arch: object) -> bool:
    """Whether `arch` has the form of an architecture an import accepts (whether it exists is `learning.zoo`'s)."""
    return isinstance(arch, str) and (arch in ModelName.values() or arch.startswith((TORCHVISION, TIMM))
                                      or FACTORY.fullmatch(arch) is not None)  # fmt: skip


def is_imported(config: Mapping[str, Any]) -> bool:
    """Whether a stored run configuration is an import's (`ImportConfig` + what the import measured)."""
    return config.get("imported") is True


def check_imported(config: Mapping[str, Any]) -> None:
    """Raise UsageError (its reason) unless `config` is what an import stores: a dataset, an architecture, the
    methods with erm, the members' files and digests and the normalization."""
    try:
        methods = config["methods"]
        ok = (
            (config["dataset"] in DatasetName.values() or str(config["dataset"]).startswith((NPZ, FOLDER)))
            and isinstance(config["arch"], str) and isinstance(methods, list) and BASELINE in methods
            and all(m in METHODS for m in methods) and len(set(methods)) == len(methods) >= 2
            and config["seed"] == 0 and config["split_seed"] == 0
            and isinstance(config["members"], dict) and set(methods) <= set(config["members"])
            and all(isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in config["members"].values())
        )  # fmt: skip
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise UsageError("settings of an imported run are missing or malformed")
