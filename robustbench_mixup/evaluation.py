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

import hashlib
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import attacks, backends, checkpoints
from .attacks import Attack, make_attack
from .config import ATTACKS, PAIR, AttackConfig
from .data import load_dataset
from .devices import resolve_device
from .errors import UsageError
from .fsutil import exclusive, remove_stale_temporaries
from .layout import Layout
from .progress import Meter
from .results import ResultsDB
from .runs import load_members, resolve_run
from .stats import wilson_interval


def build_attack(cfg: AttackConfig) -> Attack:
    """The attack object a validated config describes."""
    return make_attack(cfg.attack, steps=cfg.steps, step_size=cfg.step_size)


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
    spec: AttackConfig
    attack: Attack
    source: str  # 'surrogate' or the --source path
    dataset: str
    clean: dict[str, dict[str, float]]  # model -> {"top1", "top5", "n"}
    rows: list[Row]
    flags: list[dict[str, Any]] = field(default_factory=list)


# --- pure checks ------------------------------------------------------------------------------------


def compared_attacks(attack: str) -> list[str]:
    """The attacks whose white-box rows `attack`'s are checked against: an iterative attack must be no
    weaker than FGSM at the same ε, so FGSM is compared with every iterative attack and they with FGSM."""
    if ATTACKS[attack].iterative:
        return ["fgsm"]
    return [name for name, info in ATTACKS.items() if info.iterative]


def sanity_flags(
    rows: list[Row], clean: dict[str, dict[str, float]], attack: str, others: Mapping[str, list[Row]] | None = None
) -> list[dict[str, Any]]:
    """The gradient-masking checks over one evaluation's rows; each violation becomes a flag.

    `others` maps each attack of `compared_attacks(attack)` to its stored white-box rows.
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
    for other, other_rows in (others or {}).items():
        iterative = other if attack == "fgsm" else attack
        for o in other_rows:
            w = white.get((o.model, o.eps))
            if w is None or o.mode != "white":
                continue
            it_acc, fgsm_acc = (o.top1, w.top1) if attack == "fgsm" else (w.top1, o.top1)
            if it_acc > fgsm_acc:
                detail = f"white-box {ATTACKS[iterative].label} accuracy {it_acc:.4f} exceeds FGSM's {fgsm_acc:.4f}"
                flag(f"{iterative}_le_fgsm", w, detail)
    return flags


def _row(model: str, mode: str, eps: float, n: int, top1: int, top5: int) -> Row:
    return Row(model, mode, eps, n, top1 / n, top5 / n, wilson_interval(top1, n), wilson_interval(top5, n))


def group_flags(
    stored: list[Mapping[str, Any]], attack: str, others: Mapping[str, list[Row]] | None = None
) -> list[dict[str, Any]]:
    """`sanity_flags` over every stored row of one (run, attack, backend, n): `stored` are its
    `attack_results` rows, from however many evaluations (each row carries its model's `clean_top1`).

    Rows crafted with other settings are checked apart, so they never form one ε curve: one group per
    (steps, step size: ε/steps or a fixed one), and in it the white-box rows with each transfer source's
    black-box rows. A flag found in several groups is kept once.
    """
    clean = {r["model"]: {"top1": r["clean_top1"]} for r in stored}

    def setting(r: Mapping[str, Any]) -> tuple[int, float | None]:
        fixed = not r["steps"] or r["step_size"] != r["eps"] / r["steps"]  # a stored 0 is not a step count
        return r["steps"], r["step_size"] if fixed else None

    def row(r: Mapping[str, Any]) -> Row:
        return Row(r["model"], r["mode"], r["eps"], r["n"], r["top1"], r["top5"], (r["top1_lo"], r["top1_hi"]),
                   (r["top5_lo"], r["top5_hi"]))  # fmt: skip

    flags: list[dict[str, Any]] = []
    for key in dict.fromkeys(setting(r) for r in stored):
        same = [r for r in stored if setting(r) == key]
        white = [row(r) for r in same if r["mode"] == "white"]
        sources = dict.fromkeys(r["source"] for r in same if r["mode"] != "white")
        for source in sources or [None]:
            black = [row(r) for r in same if r["mode"] != "white" and r["source"] == source]
            flags += [f for f in sanity_flags(white + black, clean, attack, others) if f not in flags]
    return flags


# --- orchestration --------------------------------------------------------------------------------


def _check_compatible(meta: dict, reference: dict, what: str) -> None:
    a, b = meta.get("dataset", {}), reference.get("dataset", {})
    if a.get("name") != b.get("name") or a.get("image_shape") != b.get("image_shape"):
        raise UsageError(
            f"{what} was trained on {a.get('name')} {a.get('image_shape')}, but the run on "
            f"{b.get('name')} {b.get('image_shape')}: a transfer source must share the dataset and input shape"
        )


def craft_sets(
    cfg: AttackConfig, attack: Attack, source: nn.Module, images: torch.Tensor, labels: torch.Tensor,
    eps: list[float] | None = None, progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:  # fmt: skip
    """Adversarial examples crafted on `source` by `cfg.backend`, one tensor per ε (default: cfg.eps)."""
    eps = list(cfg.eps) if eps is None else eps
    if cfg.backend != "native":
        return backends.craft(cfg.backend, attack, source, images, labels, eps, batch_size=cfg.batch_size,
                              progress=progress)  # fmt: skip
    return attacks.craft(attack, source, images, labels, eps, batch_size=cfg.batch_size, progress=progress)


def evaluate_models(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: AttackConfig,
    *,
    black_sets: list[torch.Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, dict[str, float]], list[Row]]:
    """Clean accuracy and robust-accuracy rows of `models` on (images, labels).

    White box (mode white/both): each model attacked with its own gradients. Black box: `black_sets`
    (one adversarial tensor per ε of `cfg`, crafted on some source) classified by every model.
    """
    n = len(labels)
    eps = list(cfg.eps)
    attack = build_attack(cfg)
    clean_counts = attacks.score(models, images, labels, [images], batch_size=cfg.batch_size, progress=progress)
    clean = {m: {"top1": clean_counts.top1[m][0] / n, "top5": clean_counts.top5[m][0] / n, "n": n} for m in models}
    rows: list[Row] = []
    if cfg.mode in ("white", "both"):
        for name, model in models.items():
            if cfg.backend == "native":
                c = attacks.evaluate_attack(model, {name: model}, images, labels, eps, attack=attack,
                                            batch_size=cfg.batch_size, progress=progress)  # fmt: skip
            else:
                adv = craft_sets(cfg, attack, model, images, labels, progress=progress)
                c = attacks.score({name: model}, images, labels, adv, batch_size=cfg.batch_size, progress=progress)
            rows += [_row(name, "white", e, n, c.top1[name][i], c.top5[name][i]) for i, e in enumerate(eps)]
    if black_sets is not None:
        c = attacks.score(models, images, labels, black_sets, batch_size=cfg.batch_size, progress=progress)
        rows += [_row(m, "black", e, n, c.top1[m][i], c.top5[m][i]) for m in models for i, e in enumerate(eps)]
    return clean, rows


def _load_set(path: Path, expected: dict[str, Any], shape: tuple[int, ...]) -> torch.Tensor | None:
    """A saved transfer set, None when there is none; refused with one line when it is not the set
    `expected` (its metadata: source digest, attack, ε, steps, step size, backend, n) of `shape`."""
    if not path.is_file():
        return None
    tensors, meta = checkpoints.read_file(path, "transfer set")
    x = tensors.get("adversarial")
    wrong = [k for k, v in expected.items() if meta.get(k) != v]
    if set(tensors) != {"adversarial"} or x is None or x.dtype != torch.float32 or tuple(x.shape) != shape:
        wrong.append("tensor")
    if wrong:
        raise UsageError(
            f"transfer set {str(path)!r} does not hold what its name says ({', '.join(wrong)} differ): "
            "delete it and it is crafted again"
        )
    if not bool(((x >= 0) & (x <= 1)).all()):
        raise UsageError(f"transfer set {str(path)!r} holds pixels outside [0, 1]: delete it and it is crafted again")
    return x


@dataclass
class TransferSets:
    """The black-box sets of one evaluation: saved under attacks/RUN/, one per ε; `sets[i]` is None
    until loaded or crafted."""

    paths: list[Path]
    sets: list[torch.Tensor | None]

    @property
    def missing(self) -> list[int]:
        return [i for i, s in enumerate(self.sets) if s is None]


def _saved_transfer_sets(
    cfg: AttackConfig, attack: Attack, layout: Layout, run: str, src_sha: str, source_label: str, n: int,
    shape: tuple[int, ...],
) -> TransferSets:  # fmt: skip
    """The sets crafted before for this (source, attack, ε, steps, step size, n, backend), where they exist."""
    paths, sets = [], []
    for e in cfg.eps:
        key = json.dumps([src_sha, attack.name, e, attack.steps, attack.size_for(e), n, cfg.backend])
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        paths.append(layout.transfer_set(run, attack.name, cfg.backend, source_label, e, digest))
        sets.append(_load_set(paths[-1], _set_identity(src_sha, attack, cfg, e, n), (n, *shape)))
    return TransferSets(paths, sets)


def _set_identity(src_sha: str, attack: Attack, cfg: AttackConfig, eps: float, n: int) -> dict[str, Any]:
    """What a saved transfer set must say about itself to be used for (source, attack, ε, n, backend)."""
    return {"source_sha256": src_sha, "attack": attack.name, "eps": eps, "steps": attack.steps,
            "step_size": attack.size_for(eps), "backend": cfg.backend, "n": n}  # fmt: skip


def _craft_missing(
    found: TransferSets, cfg: AttackConfig, attack: Attack, run: str, src_model: nn.Module, src_meta: dict,
    source_label: str, x: torch.Tensor, y: torch.Tensor, run_cfg: dict,
    progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:  # fmt: skip
    """Craft and save the sets not found; returns every set, on the images' device."""
    missing = found.missing
    if not missing:
        return [s.to(x.device) for s in found.sets if s is not None]
    folder = found.paths[0].parent
    with exclusive(folder / ".lock", f"the transfer sets of run {run!r}"):  # Layout.attacks_lock
        remove_stale_temporaries(folder)  # under the lock: no other process is writing here
        crafted = craft_sets(cfg, attack, src_model, x, y, [cfg.eps[i] for i in missing], progress=progress)
        for i, adv in zip(missing, crafted, strict=True):
            found.sets[i] = adv
            meta = {
                **_set_identity(src_meta["sha256"], attack, cfg, cfg.eps[i], len(y)), "run": run,
                "source": source_label, "split": "test", "split_seed": run_cfg.get("split_seed", 0),
                "seed": run_cfg.get("seed"),
            }  # fmt: skip
            checkpoints.save_file(found.paths[i], {"adversarial": adv}, meta)
    return [s.to(x.device) for s in found.sets if s is not None]


def evaluate_run(
    cfg: AttackConfig,
    *,
    out: str | Path = ".",
    run: str | None = None,
    source: str | Path | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    progress: Meter | None = None,
) -> Evaluation:
    """Evaluate `run` (default: the latest) under `out` with `cfg`; results go to the database.

    Everything is checked (arguments, run, checkpoints, source compatibility, dataset) before the
    first file is written. `progress` counts the images that pass through a model.
    """
    cfg = cfg.validate()
    attack = build_attack(cfg)
    layout = Layout(out)
    run, run_cfg = resolve_run(out, run)
    db = ResultsDB(layout.database)
    try:
        dev = resolve_device(device)
        models, metas = load_members(out, run, PAIR, dev)
        src_path = Path(source) if source is not None else layout.checkpoint(run, "surrogate")
        source_label = "surrogate" if source is None else str(source)
        src_model = src_meta = None
        if cfg.mode in ("black", "both"):
            src_model, src_meta = checkpoints.load(src_path, device=dev)
            _check_compatible(src_meta, metas["erm"], f"--source {str(src_path)!r}" if source else "the surrogate")
        data = load_dataset(run_cfg["dataset"], root=data_root, split_seed=run_cfg.get("split_seed", 0))
        n = len(data.test_labels) if cfg.n is None else min(cfg.n, len(data.test_labels))
        x, y = data.test_images[:n].to(dev), data.test_labels[:n].to(dev)
        found = None
        if src_model is not None:
            found = _saved_transfer_sets(cfg, attack, layout, run, src_meta["sha256"], source_label, n,
                                         tuple(x.shape[1:]))  # fmt: skip
        if progress is not None:  # images through a model: the clean pass, each white box, the black box
            white = len(models) * (cfg.mode != "black") * (1 if cfg.backend == "native" else 2)
            transfer = 0 if found is None else 1 + bool(found.missing)  # scoring, and crafting what is missing
            progress.start(n * (1 + white + transfer))
        tick = None if progress is None else progress.update

        black = None
        if src_model is not None:
            black = _craft_missing(found, cfg, attack, run, src_model, src_meta, source_label, x, y, run_cfg, tick)
        clean, rows = evaluate_models(models, x, y, cfg, black_sets=black, progress=tick)
        others = {
            other: [_row(r["model"], "white", r["eps"], n, round(r["top1"] * n), round(r["top5"] * n))
                    for r in db.attack_rows(run, attack=other, backend=cfg.backend, n=n, mode="white")]
            for other in compared_attacks(cfg.attack)
        }  # fmt: skip
        evaluation = Evaluation(run, cfg, attack, source_label, run_cfg["dataset"], clean, rows)
        # The flags of every stored evaluation of (run, attack, backend, n), this one's rows included.
        evaluation.flags = db.record_attack(evaluation, lambda stored: group_flags(stored, cfg.attack, others))
        return evaluation
    finally:
        db.close()
