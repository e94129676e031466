"""Attack evaluation of a trained run: white box and black box (transfer), with sanity checks.

White box: `erm` and `mixup` are each attacked with their own gradients. Black box (the paper's
Table 3 protocol): examples crafted on the run's `surrogate` (an independent ERM model, the paper's
ERM#2), or on any checkpoint given as `source`, are classified by `erm` and by `mixup`. The transfer
sets are saved under `attacks/RUN/` and reused when the same attack is asked for again.

Every evaluation records, and flags without dropping anything, the gradient-masking checks of Carlini
et al. (2019), "On Evaluating Adversarial Robustness": ε = 0 reproduces the clean accuracy exactly;
accuracy never rises with ε; white-box I-FGSM is no weaker than white-box FGSM; black box is no
stronger than white box on the same target.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from . import backends, checkpoints
from .attacks import ATTACKS, AttackCounts, evaluate_attack
from .data import load_dataset
from .errors import UsageError
from .fsutil import atomic_path, remove_stale_temporaries
from .results import ResultsDB, database_path
from .runs import load_members, resolve_run
from .stats import wilson_interval
from .train import PAIR, resolve_device, run_dir

MODES = ("white", "black", "both")
TARGETS = PAIR


@dataclass(frozen=True)
class AttackSpec:
    attack: str  # 'fgsm' | 'ifgsm'
    eps: tuple[float, ...]
    steps: int = 10  # I-FGSM only
    step_size: float | None = None  # I-FGSM only; None = ε / steps
    mode: str = "both"
    backend: str = "native"
    n: int | None = None  # first n test examples; None = all
    batch_size: int = 256

    def validate(self) -> AttackSpec:
        if self.attack not in ATTACKS:
            raise UsageError(f"unknown attack {self.attack!r}: choose one of {', '.join(ATTACKS)}")
        if not self.eps:
            raise UsageError("--eps needs at least one value")
        for e in self.eps:
            if not (math.isfinite(e) and 0 <= e <= 1):
                raise UsageError(f"--eps values must lie in [0, 1] (pixel units; 8/255 is written 8/255), got {e:g}")
        if self.steps < 1:
            raise UsageError(f"--steps must be ≥ 1, got {self.steps}")
        if self.step_size is not None and not (math.isfinite(self.step_size) and self.step_size > 0):
            raise UsageError(f"--step-size must be > 0, got {self.step_size:g}")
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.n is not None and self.n < 1:
            raise UsageError(f"--n must be ≥ 1, got {self.n}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        backends.require(self.backend)
        return self

    def steps_for(self) -> int:
        return 1 if self.attack == "fgsm" else self.steps

    def size_for(self, eps: float) -> float:
        if self.attack == "fgsm":
            return eps
        return eps / self.steps if self.step_size is None else self.step_size


@dataclass
class Row:
    model: str
    mode: str
    eps: float
    n: int
    top1: float
    top5: float
    top1_ci: tuple[float, float]
    top5_ci: tuple[float, float]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["top1_err"], d["top5_err"] = 1 - self.top1, 1 - self.top5
        return d


@dataclass
class Evaluation:
    run: str
    spec: AttackSpec
    source: str  # 'surrogate' or the --source path
    dataset: str
    clean: dict[str, dict[str, float]]  # model -> {"top1", "top5", "n"}
    rows: list[Row]
    flags: list[dict[str, Any]] = field(default_factory=list)


# --- pure checks ------------------------------------------------------------------------------------


def sanity_flags(
    rows: list[Row], clean: dict[str, dict[str, float]], attack: str, other_attack_rows: list[Row] | None = None
) -> list[dict[str, Any]]:
    """The gradient-masking checks over one evaluation's rows; each violation becomes a flag.

    `other_attack_rows` are the white-box rows of FGSM when `attack` is I-FGSM, or the reverse.
    """
    flags: list[dict[str, Any]] = []

    def flag(check: str, row: Row, detail: str) -> None:
        flags.append({"check": check, "model": row.model, "mode": row.mode, "eps": row.eps, "detail": detail})

    for r in rows:
        if r.eps == 0 and r.top1 != clean[r.model]["top1"]:
            flag(
                "eps0_equals_clean",
                r,
                f"accuracy at ε=0 is {r.top1:.4f} but clean accuracy is {clean[r.model]['top1']:.4f}",
            )
    for model in {r.model for r in rows}:
        for mode in ("white", "black"):
            curve = sorted((r for r in rows if r.model == model and r.mode == mode), key=lambda r: r.eps)
            for lo, hi in itertools.pairwise(curve):
                if hi.top1 > lo.top1:
                    flag("monotone_in_eps", hi, f"accuracy rises from {lo.top1:.4f} at ε={lo.eps:g} to {hi.top1:.4f}")
    white = {(r.model, r.eps): r for r in rows if r.mode == "white"}
    for r in rows:
        w = white.get((r.model, r.eps))
        if r.mode == "black" and w is not None and r.top1 < w.top1:
            flag("black_ge_white", r, f"black-box accuracy {r.top1:.4f} is below white-box {w.top1:.4f}")
    for o in other_attack_rows or []:
        w = white.get((o.model, o.eps))
        if w is None or o.mode != "white":
            continue
        ifgsm_acc, fgsm_acc = (w.top1, o.top1) if attack == "ifgsm" else (o.top1, w.top1)
        if ifgsm_acc > fgsm_acc:
            flag("ifgsm_le_fgsm", w, f"white-box I-FGSM accuracy {ifgsm_acc:.4f} exceeds FGSM's {fgsm_acc:.4f}")
    return flags


def _row(model: str, mode: str, eps: float, n: int, top1: int, top5: int) -> Row:
    return Row(model, mode, eps, n, top1 / n, top5 / n, wilson_interval(top1, n), wilson_interval(top5, n))


# --- orchestration --------------------------------------------------------------------------------


def _check_compatible(meta: dict, reference: dict, what: str) -> None:
    a, b = meta.get("dataset", {}), reference.get("dataset", {})
    if a.get("name") != b.get("name") or a.get("image_shape") != b.get("image_shape"):
        raise UsageError(
            f"{what} was trained on {a.get('name')} {a.get('image_shape')}, but the run on "
            f"{b.get('name')} {b.get('image_shape')}: a transfer source must share the dataset and input shape"
        )


def _set_path(out: Path, run: str, spec: AttackSpec, source_sha: str, source_label: str, eps: float, n: int) -> Path:
    key = json.dumps([source_sha, spec.attack, eps, spec.steps_for(), spec.size_for(eps), n, spec.backend])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    label = "".join(c if c.isalnum() or c in "-_." else "_" for c in source_label)[:40]
    return out / "attacks" / run / f"{spec.attack}-{spec.backend}-{label}-eps{eps:.6g}-{digest}.safetensors"


def _load_set(path: Path, n: int) -> torch.Tensor | None:
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt", device="cpu") as f:
        x = f.get_tensor("adversarial")
    return x if len(x) == n else None


def _score(
    models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, sets: list[torch.Tensor], batch: int,
    progress: Callable[[int], None] | None = None,
) -> AttackCounts:  # fmt: skip
    """Count hits of every model on ready-made inputs (one tensor per entry of `sets`)."""
    anyone = next(iter(models.values()))
    return evaluate_attack(
        anyone, models, x, y, [0.0] * len(sets), batch_size=batch, precomputed=sets, progress=progress
    )


def evaluate_models(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: AttackSpec,
    *,
    black_sets: list[torch.Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, dict[str, float]], list[Row]]:
    """Clean accuracy and robust-accuracy rows of `models` on (images, labels).

    White box (mode white/both): each model attacked with its own gradients. Black box: `black_sets`
    (one adversarial tensor per ε of `spec`, crafted on some source) classified by every model.
    """
    n = len(labels)
    eps = list(spec.eps)
    clean_counts = _score(models, images, labels, [images], spec.batch_size, progress)
    clean = {m: {"top1": clean_counts.top1[m][0] / n, "top5": clean_counts.top5[m][0] / n, "n": n} for m in models}
    rows: list[Row] = []
    if spec.mode in ("white", "both"):
        for name, model in models.items():
            if spec.backend == "native":
                c = evaluate_attack(
                    model, {name: model}, images, labels, eps, attack=spec.attack, steps=spec.steps,
                    step_size=spec.step_size, batch_size=spec.batch_size, progress=progress,
                )  # fmt: skip
            else:
                adv = craft_sets(spec, model, images, labels, progress=progress)
                c = _score({name: model}, images, labels, adv, spec.batch_size, progress)
            rows += [_row(name, "white", e, n, c.top1[name][i], c.top5[name][i]) for i, e in enumerate(eps)]
    if black_sets is not None:
        c = _score(models, images, labels, black_sets, spec.batch_size, progress)
        rows += [_row(m, "black", e, n, c.top1[m][i], c.top5[m][i]) for m in models for i, e in enumerate(eps)]
    return clean, rows


def craft_sets(
    spec: AttackSpec, source: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: list[float] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:  # fmt: skip
    """Adversarial examples crafted on `source` by `spec.backend`, one tensor per ε (default: spec.eps)."""
    eps = list(spec.eps) if eps is None else eps
    if spec.backend != "native":
        return backends.craft(
            spec.backend, source, images, labels, eps, attack=spec.attack, steps=spec.steps,
            step_size=spec.step_size, batch_size=spec.batch_size,
        )  # fmt: skip
    counts = evaluate_attack(
        source, {}, images, labels, eps, attack=spec.attack, steps=spec.steps, step_size=spec.step_size,
        batch_size=spec.batch_size, keep_adversarial=True, progress=progress,
    )  # fmt: skip
    return counts.adversarial or []


def _transfer_sets(
    spec: AttackSpec, out: Path, run: str, src_model: nn.Module, src_meta: dict, source_label: str,
    x: torch.Tensor, y: torch.Tensor, cfg: dict, progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:  # fmt: skip
    """The black-box sets for every ε: loaded from attacks/RUN/ when crafted before, else crafted and saved."""
    n = len(y)
    paths = [_set_path(out, run, spec, src_meta["sha256"], source_label, e, n) for e in spec.eps]
    sets = [_load_set(p, n) for p in paths]
    missing = [i for i, s in enumerate(sets) if s is None]
    if missing:
        remove_stale_temporaries(paths[0].parent)
        crafted = craft_sets(spec, src_model, x, y, [spec.eps[i] for i in missing], progress=progress)
        for i, adv in zip(missing, crafted, strict=True):
            sets[i] = adv
            meta = {
                "run": run, "source": source_label, "source_sha256": src_meta["sha256"], "attack": spec.attack,
                "eps": spec.eps[i], "steps": spec.steps_for(), "step_size": spec.size_for(spec.eps[i]),
                "backend": spec.backend, "split": "test", "n": n, "split_seed": cfg.get("split_seed", 0),
                "seed": cfg.get("seed"),
            }  # fmt: skip
            with atomic_path(paths[i]) as tmp:
                save_file({"adversarial": adv.cpu().contiguous()}, str(tmp), metadata={"robust_eval": json.dumps(meta)})
    return [s.to(x.device) for s in sets if s is not None]


def evaluate_run(
    spec: AttackSpec,
    *,
    out: str | Path = ".",
    run: str | None = None,
    source: str | Path | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Evaluate `run` (default: the latest) under `out` with `spec`; results go to the database.

    Everything is checked (arguments, run, checkpoints, source compatibility, dataset) before the
    first file is written.
    """
    spec = dataclasses.replace(spec.validate(), eps=tuple(dict.fromkeys(spec.eps)))  # unique, order kept
    out = Path(out)
    run, cfg = resolve_run(out, run)
    db = ResultsDB(database_path(out))
    try:
        dev = resolve_device(device)
        models, metas = load_members(out, run, TARGETS, dev)
        src_path = Path(source) if source is not None else run_dir(out, run) / "surrogate.safetensors"
        source_label = "surrogate" if source is None else str(source)
        src_model = src_meta = None
        if spec.mode in ("black", "both"):
            src_model, src_meta = checkpoints.load(src_path, device=dev)
            _check_compatible(src_meta, metas["erm"], f"--source {str(src_path)!r}" if source else "the surrogate")
        data = load_dataset(cfg["dataset"], root=data_root, split_seed=cfg.get("split_seed", 0))
        n = len(data.test_labels) if spec.n is None else min(spec.n, len(data.test_labels))
        x, y = data.test_images[:n].to(dev), data.test_labels[:n].to(dev)

        black = None
        if src_model is not None:
            black = _transfer_sets(spec, out, run, src_model, src_meta, source_label, x, y, cfg, progress)
        clean, rows = evaluate_models(models, x, y, spec, black_sets=black, progress=progress)
        other = "ifgsm" if spec.attack == "fgsm" else "fgsm"
        others = db.attack_rows(run, attack=other, backend=spec.backend, n=n, mode="white")
        other_rows = [
            _row(r["model"], "white", r["eps"], n, round(r["top1"] * n), round(r["top5"] * n)) for r in others
        ]
        flags = sanity_flags(rows, clean, spec.attack, other_rows)
        evaluation = Evaluation(run, spec, source_label, cfg["dataset"], clean, rows, flags)
        db.record_attack(evaluation)
        return evaluation
    finally:
        db.close()
