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
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_mixup.attacks import backends, engine
from robustbench_mixup.attacks.indicators import Indicator, measure, ordering_flags
from robustbench_mixup.attacks.methods import Attack, make_attack
from robustbench_mixup.learning import checkpoints
from robustbench_mixup.learning.devices import frozen
from robustbench_mixup.measures.stats import wilson_interval
from robustbench_mixup.settings.config import ATTACKS, AttackConfig, AttackSetting
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.fsutil import exclusive, remove_stale_temporaries
from robustbench_mixup.settings.imported import is_imported
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.stages.progress import Meter
from robustbench_mixup.store.database import ResultsDB
from robustbench_mixup.store.runs import open_run


def build_attack(cfg: AttackConfig, seed: int = 0) -> Attack:
    """The attack object a validated config describes; `seed` (the run's) seeds its random starts."""
    options = ATTACKS[cfg.attack].options
    return make_attack(cfg.attack, steps=cfg.steps, step_size=cfg.step_size, restarts=cfg.restarts,
                       seed=seed if "seed" in options else 0, precision=cfg.precision,
                       early_stop=cfg.early_stop)  # fmt: skip


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
    correct: torch.Tensor | None = field(default=None, repr=False)  # per example, (n,) bool

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "correct"}
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
    indicators: list[Indicator] = field(default_factory=list)


def stored_flags(stored: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`indicators.ordering_flags` over every stored row of one run on the same examples (each row
    carries its model's clean accuracy)."""
    return ordering_flags(stored, {r["model"]: r["clean_top1"] for r in stored})


def _row(model: str, mode: str, eps: float, n: int, top1: int, top5: int, correct: torch.Tensor | None = None) -> Row:
    return Row(model, mode, eps, n, top1 / n, top5 / n, wilson_interval(top1, n), wilson_interval(top5, n), correct)


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
    return engine.craft(attack, source, images, labels, eps, batch_size=cfg.batch_size, progress=progress)


def evaluate_models(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: AttackConfig,
    *,
    black_sets: list[torch.Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
    seed: int = 0,
    indicators: list[Indicator] | None = None,
) -> tuple[dict[str, dict[str, float]], list[Row]]:
    """Clean accuracy and robust-accuracy rows of `models` on (images, labels).

    White box (mode white/both): each model attacked with its own gradients; with a list given as
    `indicators`, the attack-failure indicators of each white-box evaluation are appended to it.
    Black box: `black_sets` (one adversarial tensor per ε of `cfg`, crafted on some source)
    classified by every model. Rows carry their per-example outcomes.
    """
    n = len(labels)
    eps = list(cfg.eps)
    attack = build_attack(cfg, seed)
    clean_counts = engine.score(models, images, labels, [images], batch_size=cfg.batch_size, progress=progress)
    clean = {m: {"top1": clean_counts.top1[m][0] / n, "top5": clean_counts.top5[m][0] / n, "n": n} for m in models}
    rows: list[Row] = []
    if cfg.mode in ("white", "both"):
        for name, model in models.items():
            attacked = torch.compile(model) if cfg.compile else model
            if cfg.backend == "native":
                # A compiled model crafts; the eager one scores, as it scores the clean pass.
                c = engine.evaluate_attack(attacked, {name: model}, images, labels, eps, attack=attack,
                                            batch_size=cfg.batch_size, progress=progress)  # fmt: skip
                if indicators is not None:
                    traces = [c.trace(i) for i in range(len(eps))]
                    first = c.first + [None] * (len(eps) - len(c.first))
                    with frozen(model):
                        indicators += measure(name, model, attack, images, labels, eps, c.correct[name], traces,
                                              first, seed=seed)  # fmt: skip
            else:
                adv = craft_sets(cfg, attack, model, images, labels, progress=progress)
                c = engine.score({name: model}, images, labels, adv, batch_size=cfg.batch_size, progress=progress)
            rows += [_row(name, "white", e, n, c.top1[name][i], c.top5[name][i], c.correct[name][i])
                     for i, e in enumerate(eps)]  # fmt: skip
    if black_sets is not None:
        c = engine.score(models, images, labels, black_sets, batch_size=cfg.batch_size, progress=progress)
        rows += [_row(m, "black", e, n, c.top1[m][i], c.top5[m][i], c.correct[m][i])
                 for m in models for i, e in enumerate(eps)]  # fmt: skip
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
        s = attack.setting(e)
        key = json.dumps([src_sha, attack.name, e, s.steps, s.step_size, n, cfg.backend,
                          *_random_identity(s, attack.random_start).values()])  # fmt: skip
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        paths.append(layout.transfer_set(run, attack.name, cfg.backend, source_label, e, digest))
        sets.append(_load_set(paths[-1], _set_identity(src_sha, attack, cfg, e, n), (n, *shape)))
    return TransferSets(paths, sets)


def _set_identity(src_sha: str, attack: Attack, cfg: AttackConfig, eps: float, n: int) -> dict[str, Any]:
    """What a saved transfer set must say about itself to be used for (source, attack, ε, n, backend)."""
    s = attack.setting(eps)
    return {"source_sha256": src_sha, "attack": attack.name, "eps": eps, "steps": s.steps, "step_size": s.step_size,
            "backend": cfg.backend, "n": n, **_random_identity(s, attack.random_start)}  # fmt: skip


def _random_identity(s: AttackSetting, random_start: bool) -> dict[str, Any]:
    """The settings beyond FGSM's and I-FGSM's that change a set: restarts, the seed of the random
    starts, the precision (empty for a default FGSM or I-FGSM, whose sets keep their names)."""
    if (s.restarts, s.seed, s.precision) == (1, 0, "fp32") and not random_start:
        return {}
    return {"restarts": s.restarts, "seed": s.seed, "precision": s.precision}


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
        crafted = craft_sets(cfg, attack.for_transfer(), src_model, x, y, [cfg.eps[i] for i in missing],
                             progress=progress)  # fmt: skip
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
    layout = Layout(out)
    opened = open_run(out, run, device=device, data_root=data_root)
    run, run_cfg, models, metas, data, dev = (opened.name, opened.config, opened.models, opened.metas, opened.data,
                                              opened.device)  # fmt: skip
    seed = opened.seed
    attack = build_attack(cfg, seed)
    db = ResultsDB(layout.database)
    try:
        src_path = Path(source) if source is not None else layout.checkpoint(run, "surrogate")
        source_label = "surrogate" if source is None else str(source)
        src_model = src_meta = None
        if cfg.mode in ("black", "both") and source is None and not src_path.is_file() and is_imported(run_cfg):
            raise UsageError(f"run {run!r} was imported without a black-box source: pass --mode white, or import it "
                             "with --source surrogate=PATH")  # fmt: skip
        if cfg.mode in ("black", "both"):
            src_model, src_meta = checkpoints.load(src_path, device=dev)
            _check_compatible(src_meta, metas["erm"], f"--source {str(src_path)!r}" if source else "the surrogate")
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
        found_indicators: list[Indicator] = []
        clean, rows = evaluate_models(models, x, y, cfg, black_sets=black, progress=tick, seed=seed,
                                      indicators=found_indicators)  # fmt: skip
        evaluation = Evaluation(run, cfg, attack, source_label, run_cfg["dataset"], clean, rows,
                                indicators=found_indicators)  # fmt: skip
        # The flags of every stored evaluation of the run on these n examples, this one's rows included.
        evaluation.flags = db.record_attack(evaluation, stored_flags)
        return evaluation
    finally:
        db.close()
