"""The import stage: models trained elsewhere made into a run that every later stage reads like a trained one.

Each member's weights are read at one boundary (`learning.weights`), put into its architecture behind the
declared normalization, and checked as AutoAttack and RobustBench check a submitted model before anything is
written: eval-mode outputs are deterministic, have one column per class and fit the dataset's images, look like
logits rather than probabilities (a warning: attacks on probabilities mask gradients), and are well above chance
on the test set (a model near chance is refused, naming normalization and the input range as the usual cause,
unless `force`). Then every member is written as the package's own checkpoint (its source file's name and SHA-256
in the metadata), with its per-example clean outcomes and the checks in the results database.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_mixup.learning import checkpoints
from robustbench_mixup.learning.data import Dataset, load_dataset
from robustbench_mixup.learning.devices import predict, resolve_device
from robustbench_mixup.learning.models import MODELS, Normalize, build_model
from robustbench_mixup.learning.user_data import file_sha256
from robustbench_mixup.learning.weights import fit, read_state_dict
from robustbench_mixup.learning.zoo import Imported, check_arch, is_factory, trust_factory
from robustbench_mixup.measures.stats import wilson_interval
from robustbench_mixup.settings.config import SURROGATE
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.fsutil import atomic_write_json, ensure_writable_dir, exclusive
from robustbench_mixup.settings.imported import FOLDER, NPZ, ImportConfig
from robustbench_mixup.settings.layout import Layout, check_run_name
from robustbench_mixup.store.database import ResultsDB, read_stored
from robustbench_mixup.store.provenance import environment

CHECK_N = 64  # images through each model for the determinism and output checks


@dataclass
class ImportResult:
    run: str
    out: Path
    clean: dict[str, float]  # member -> clean test accuracy
    checks: dict[str, dict[str, Any]]  # member -> what the import measured of it


def _model(arch: str, dataset: Dataset, mean: list[float], std: list[float]) -> nn.Module:
    if arch in MODELS:  # the package's own network: its normalization is in the weights, as the package saves it
        return build_model(arch, in_shape=list(dataset.image_shape), num_classes=dataset.num_classes,
                           mean=mean, std=std)  # fmt: skip
    return Imported(arch, list(dataset.image_shape), dataset.num_classes, mean, std)


def _checks(member: str, model: nn.Module, dataset: Dataset, device: torch.device, force: bool) -> dict[str, Any]:
    """What the import measures of one model; a model no evaluation can trust is refused (UsageError)."""
    k, x = dataset.num_classes, dataset.test_images[:CHECK_N].to(device)
    try:
        with torch.no_grad():
            first, second = model(x), model(x)
    except Exception as exc:  # the user's architecture and weights: whatever it raises is their model's answer
        why = f"{type(exc).__name__}: {str(exc).strip()[:120]}"
        raise UsageError(f"member {member!r} cannot classify {dataset.name}'s images of shape "
                         f"{list(dataset.image_shape)}: {why}") from None  # fmt: skip
    if not isinstance(first, torch.Tensor) or tuple(first.shape) != (len(x), k):
        shape = tuple(first.shape) if isinstance(first, torch.Tensor) else type(first).__name__
        raise UsageError(f"member {member!r} outputs {shape} for {len(x)} images; {dataset.name} needs logits of "
                         f"shape ({len(x)}, {k}), one per class")  # fmt: skip
    if not torch.equal(first, second):
        raise UsageError(f"member {member!r} gives different outputs for the same images in eval mode (dropout or "
                         "another random layer still active?): an attack on it would measure noise")  # fmt: skip
    in_range = bool(((first >= 0) & (first <= 1)).all())
    probabilities = in_range and bool(torch.allclose(first.sum(1), torch.ones_like(first[:, 0]), atol=1e-3))
    correct = (predict(model, dataset.test_images.to(device)) == dataset.test_labels.to(device)).cpu()
    hits, n = int(correct.sum()), len(correct)
    lo, hi = wilson_interval(hits, n)
    chance = 1 / k
    near_chance = lo < 2 * chance  # not clearly above twice the chance level
    if near_chance and not force:
        raise UsageError(
            f"member {member!r} classifies {hits / n:.1%} of {dataset.name}'s {n:,} test images correctly (chance: "
            f"{chance:.0%}): the usual cause is the normalization (--mean/--std, or --normalized) or the input range "
            "(images must be in [0, 1]); --force keeps it"
        )
    return {"deterministic": True, "outputs": k, "probabilities": probabilities, "clean_acc": hits / n,
            "clean_acc_lo": lo, "clean_acc_hi": hi, "near_chance": near_chance, "correct": correct}  # fmt: skip


def import_run(
    cfg: ImportConfig,
    *,
    run: str,
    out: str | Path = ".",
    device: str = "auto",
    data_root: str | Path | None = None,
    download: bool = False,
    argv: list[str] | None = None,
) -> ImportResult:
    """Make run `run` under `out` of the models `cfg` names. Everything is read and checked before the first
    write; a refused import writes nothing. The same import again (the same files) finds it done."""
    cfg = cfg.validate()
    check_run_name(run)
    layout = Layout(out)
    dataset_sha256 = None
    for prefix in (NPZ, FOLDER):  # a test set the user brought: named by its absolute path, its digest recorded
        if cfg.dataset.startswith(prefix):
            where = Path(cfg.dataset[len(prefix) :]).resolve()
            cfg = dataclasses.replace(cfg, dataset=f"{prefix}{where}")
            dataset_sha256 = file_sha256(where) if where.exists() else None
    paths = {member: Path(p) for member, p in cfg.paths().items()}
    digests = {}
    for member, path in paths.items():
        if not path.is_file():
            raise UsageError(f"--member {member}={str(path)!r}: no such file")
        digests[member] = file_sha256(path)
    previous = read_stored(layout.database, lambda db: db.get_run(run))
    if previous is not None:  # the same import again (an interrupted one is written again), or another run
        stored = previous["config"]
        same = stored.get("imported") and {m: v.get("sha256") for m, v in stored.get("members", {}).items()} == digests
        if not same:
            raise UsageError(f"run {run!r} already exists under {str(layout.root)!r}: choose another --run")
        if previous["status"] != "done":
            previous = None
    elif layout.run_dir(run).exists():
        raise UsageError(f"{str(layout.run_dir(run))!r} already exists: choose another --run")
    dataset = load_dataset(cfg.dataset, root=data_root, download=download)
    arch = check_arch(cfg.arch)
    if is_factory(arch):  # the user names their code here: this process may import it (later ones as they say)
        trust_factory(arch)
    channels = dataset.image_shape[0]
    if cfg.normalized:
        mean, std = [0.0] * channels, [1.0] * channels
    elif cfg.mean is not None and cfg.std is not None:
        mean, std = list(cfg.mean), list(cfg.std)
        if len(mean) != channels or len(std) != channels:
            raise UsageError(f"--mean and --std need {channels} numbers each ({dataset.name} has {channels} "
                             f"channel{'s' if channels > 1 else ''}), got {len(mean)} and {len(std)}")  # fmt: skip
    else:
        mean, std = list(dataset.mean), list(dataset.std)
    dev = resolve_device(device)
    models, checks = {}, {}
    for member, path in paths.items():
        model = _model(arch, dataset, mean, std)
        fit(model.net if isinstance(model, Imported) else model, read_state_dict(path), f"--member {member} weights")
        models[member] = model.to(dev).eval()
        checks[member] = _checks(member, models[member], dataset, dev, cfg.force)
        if arch in MODELS:  # what the weights carry, as the model will use it
            norm = next(m for m in model.modules() if isinstance(m, Normalize))
            checks[member]["normalization"] = {"mean": norm.mean.flatten().tolist(), "std": norm.std.flatten().tolist()}
    if previous is not None:  # the same files: done before
        return ImportResult(run, layout.root, {m: c["clean_acc"] for m, c in checks.items()},
                            previous["config"]["checks"])  # fmt: skip

    record = {
        "imported": True, "dataset": cfg.dataset, **({"dataset_sha256": dataset_sha256} if dataset_sha256 else {}),
        "arch": arch, "methods": list(cfg.methods), "seed": 0,
        "split_seed": 0,
        "normalization": "weights" if arch in MODELS else "inside" if cfg.normalized else {"mean": mean, "std": std},
        "members": {m: {"file": paths[m].name, "sha256": digests[m]} for m in paths},
        "checks": {m: {k: v for k, v in c.items() if k != "correct"} for m, c in checks.items()},
    }  # fmt: skip
    ensure_writable_dir(layout.root)
    with exclusive(layout.run_lock(run), f"run {run!r}"), ResultsDB(layout.database) as db:
        for member, model in models.items():
            meta = {"run": run, "member": member, "method": "erm" if member == SURROGATE else member,
                    "dataset": dataset.describe(), "imported": record["members"][member],
                    "normalization": record["normalization"], "checks": record["checks"][member]}  # fmt: skip
            checkpoints.save(model, layout.checkpoint(run, member), metadata=meta)
        atomic_write_json(layout.run_json(run), {"run": run, "config": record, "dataset": dataset.describe()})
        db.start_run(run, kind="import", config=record, seed=0, dataset=cfg.dataset,
                     environment=environment(str(dev), argv))  # fmt: skip
        for member, c in checks.items():
            db.record_clean(run, member, "test", c["correct"])
        db.finish_run(run)
    return ImportResult(run, layout.root, {m: c["clean_acc"] for m, c in checks.items()}, record["checks"])
