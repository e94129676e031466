"""Every setting of every stage, as small dataclasses, and the closed sets as string enums.

This module imports no torch, so the command line builds its parser (defaults, `choices`, help) from
it and `robust-eval --help` answers at once. Each config validates itself (`validate()` raises
`UsageError` naming the option and the accepted range) before anything is written; the stages take a
validated config and nothing else.

| config          | what it decides                                   | used by                          |
|-----------------|---------------------------------------------------|----------------------------------|
| `TrainConfig`   | everything that determines a run's weights        | `stages.train.train_run`, every sweep job |
| `AttackConfig`  | one attack evaluation of a run (attack, ε, mode)  | `stages.attack.evaluate_run`     |
| `ProbeConfig`   | the Figure-2 probe between pairs                  | `stages.probe.probe_run`         |
| `SweepConfig`   | the memorization grid noise × α × dropout × seed  | `stages.sweep_corrupt.run_sweep` |
| `Preset`        | all of the above for `robust-eval run`            | `cli.pipeline`                   |

`ATTACKS` is the registry of attacks: the one place a new attack is named, with its label, its
options and their defaults. `attacks/methods.py` holds the matching attack object (a test checks the two agree).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from robustbench_mixup.settings.errors import UsageError

# --- closed sets ------------------------------------------------------------------------------------


class Choice(str, Enum):
    """A closed set of strings; `values()` is what argparse offers, `check()` what the API accepts."""

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)

    @classmethod
    def check(cls, value: object, option: str) -> str:
        if value not in cls.values():
            raise UsageError(f"unknown {option.lstrip('-')} {value!r}: choose one of {', '.join(cls.values())}")
        return str(value)


class DatasetName(Choice):  # `data.LOADERS` is the registry; a test checks they match
    DIGITS = "digits"
    MNIST_5K = "mnist-5k"
    FASHION_MNIST = "fashion-mnist"
    MNIST = "mnist"
    CIFAR10 = "cifar10"
    CIFAR100 = "cifar100"


class ModelName(Choice):  # `models.MODELS` is the registry; a test checks they match
    MLP = "mlp"
    SMALLCNN = "smallcnn"
    PREACT_RESNET18 = "preact-resnet18"


class Device(Choice):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Mode(Choice):
    WHITE = "white"
    BLACK = "black"
    BOTH = "both"


class Backend(Choice):
    NATIVE = "native"
    TORCHATTACKS = "torchattacks"
    FOOLBOX = "foolbox"


class Executor(Choice):
    LOCAL = "local"
    RAY = "ray"


DEFAULT_EXECUTOR = Executor.LOCAL.value
DEFAULT_WORKERS = 1  # local worker processes of a sweep


class Split(Choice):
    TRAIN = "train"
    TEST = "test"


class SameClass(Choice):
    EXCLUDE = "exclude"
    INCLUDE = "include"


DATASETS = DatasetName.values()
MODELS = ModelName.values()
DEVICES = Device.values()

PROG = "robust-eval"  # the command line's name
DEFAULT_OUT = "."  # the output root, `--out`
DEFAULT_DEVICE = "auto"
DEFAULT_WIDTH = 64  # preact-resnet18's first-stage channels when `width` is None
MAX_WIDTH = 1024  # the widest a checkpoint may ask for (a hostile file must not allocate terabytes)

SURROGATE = "surrogate"  # the independent ERM model every run trains as the black-box source


class MethodName(Choice):  # `mixing.STEPS` is the registry of their training steps; a test checks they match
    ERM = "erm"
    MIXUP = "mixup"
    CUTMIX = "cutmix"
    MANIFOLD_MIXUP = "manifold-mixup"
    LABEL_SMOOTHING = "label-smoothing"


@dataclass(frozen=True)
class MethodInfo:
    """A training method as the command line, the database and the report know it (no torch needed)."""

    name: str  # a member's name in a run, and the key of `mixing.STEPS`
    label: str  # as tables and the report print it
    summary: str  # one line for --help
    param: str | None = None  # the `TrainConfig` field of its α (or smoothing factor); None: it takes none
    symbol: str = "α"  # how the report writes its parameter
    beta: bool = True  # its parameter is a Beta(α, α) concentration, on a sweep's α grid (else a factor in [0, 1))
    recorded: bool = False  # its parameter is recorded even when it is not trained (mixup's α, as runs always were)

    @property
    def option(self) -> str:
        """The command-line option of its parameter: `--cutmix-alpha`."""
        return "" if self.param is None else "--" + self.param.replace("_", "-")


METHODS: dict[str, MethodInfo] = {
    "erm": MethodInfo("erm", "ERM", "empirical risk minimization: one-hot labels, inputs as they are"),
    "mixup": MethodInfo("mixup", "mixup", "input mixup: λ·x_i + (1−λ)·x_j with the labels mixed alike, "
                        "λ ~ Beta(α, α) (Zhang et al. 2018)", "alpha", recorded=True),
    "cutmix": MethodInfo("cutmix", "CutMix", "a box of about (1−λ) of the image pasted from another example, "
                         "labels weighted by the visible area, on every batch (Yun et al. 2019)", "cutmix_alpha"),
    "manifold-mixup": MethodInfo("manifold-mixup", "Manifold Mixup", "mixup of the hidden representation at a "
                                 "layer drawn per batch, the input included (Verma et al. 2019)", "manifold_alpha"),
    "label-smoothing": MethodInfo("label-smoothing", "label smoothing", "a control: one-hot targets smoothed "
                                  "towards uniform by a factor, inputs unmixed (Szegedy et al. 2016)",
                                  "smoothing", "s", beta=False),
}  # fmt: skip
DEFAULT_METHODS = ("erm", "mixup")  # what a run trains unless --methods says otherwise
BASELINE = "erm"  # every other method is compared with it
PAPER_METHOD = "mixup"  # the method the paper's claims and figures are about

# SQLite stores signed 64-bit integers.
MAX_SEED = 2**63 - 1


def surrogate_seed(seed: int) -> int:
    """The surrogate's seed: a stream of the run's seed of its own (a hash of (seed, 'surrogate')), so that
    in a group of seeds no model equals another (with seed + 1, seed 0's surrogate would be seed 1's erm)."""
    digest = hashlib.sha256(f"{int(seed)}/surrogate".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _require(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- training ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's weights. Recorded with the run and in every checkpoint."""

    dataset: str = "mnist-5k"
    model: str = "smallcnn"
    epochs: int = 15
    alpha: float = 1.0  # Beta(α, α) for the `mixup` member; 0 makes it a second ERM model
    seed: int = 0
    batch_size: int = 128
    lr: float = 0.1  # initial; divided by 10 at 50% and 75% of the epochs
    momentum: float = 0.9
    weight_decay: float = 1e-4
    dropout: float = 0.0  # p of the models' dropout layers (0: none)
    width: int | None = None  # preact-resnet18's first-stage channels (None: DEFAULT_WIDTH)
    split_seed: int = 0  # the bundled datasets' train/test split, independent of `seed`
    methods: tuple[str, ...] = DEFAULT_METHODS  # the members compared, in `METHODS` order; `erm` always
    cutmix_alpha: float = 1.0  # Beta(α, α) of `cutmix` (Yun et al.: 1)
    manifold_alpha: float = 2.0  # Beta(α, α) of `manifold-mixup` (Verma et al.: 2 on CIFAR-10)
    smoothing: float = 0.1  # `label-smoothing`'s factor s: targets (1−s)·onehot + s/K (Szegedy et al.: 0.1)
    train_n: int | None = None  # a stratified subset of this many training images (`data.train_subset`); None: all

    def __post_init__(self) -> None:
        # One spelling per set of methods (a list read from JSON, any order given), so that configurations
        # compare equal whenever they train the same models.
        methods = tuple(self.methods) if isinstance(self.methods, (list, tuple)) else self.methods
        if isinstance(methods, tuple) and set(methods) <= set(METHODS):
            methods = tuple(sorted(methods, key=list(METHODS).index))
        object.__setattr__(self, "methods", methods)

    def validate(self) -> TrainConfig:
        DatasetName.check(self.dataset, "dataset")
        ModelName.check(self.model, "model")
        _require([
            (_is_int(self.epochs) and self.epochs >= 1, f"--epochs must be ≥ 1, got {self.epochs}"),
            (math.isfinite(self.alpha) and self.alpha >= 0, f"--alpha must be ≥ 0, got {self.alpha}"),
            (_is_int(self.seed) and 0 <= self.seed <= MAX_SEED, f"--seed must be in [0, {MAX_SEED}], got {self.seed}"),
            (_is_int(self.batch_size) and self.batch_size >= 1, f"--batch-size must be ≥ 1, got {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (
                math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                f"--weight-decay must be ≥ 0, got {self.weight_decay}",
            ),
            (0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}"),
            (self.width is None or 1 <= self.width <= MAX_WIDTH,
             f"--width must be in [1, {MAX_WIDTH}], got {self.width}"),
            (self.width is None or self.model == "preact-resnet18", "--width applies to preact-resnet18 only"),
            (self.train_n is None or (_is_int(self.train_n) and self.train_n >= 1),
             f"--train-n must be a positive number of training images, got {self.train_n}"),
        ])  # fmt: skip
        methods = self.methods
        if not isinstance(methods, tuple) or not methods or not all(isinstance(m, str) for m in methods):
            raise UsageError(f"--methods needs one or more of {', '.join(METHODS)}, got {methods!r}")
        for m in methods:
            MethodName.check(m, "method")
        _require([
            (len(set(methods)) == len(methods), f"--methods lists a method more than once: {' '.join(methods)}"),
            (BASELINE in methods, f"--methods must include {BASELINE}: every other method is compared with it"),
            (len(methods) > 1, f"--methods needs a method besides {BASELINE} to compare with it"),
            (math.isfinite(self.cutmix_alpha) and self.cutmix_alpha >= 0,
             f"--cutmix-alpha must be ≥ 0, got {self.cutmix_alpha}"),
            (math.isfinite(self.manifold_alpha) and self.manifold_alpha >= 0,
             f"--manifold-alpha must be ≥ 0, got {self.manifold_alpha}"),
            (0 <= self.smoothing < 1, f"--smoothing must be in [0, 1), got {self.smoothing}"),
        ])  # fmt: skip
        default = TrainConfig()
        for name, info in METHODS.items():
            if info.param is not None and name not in methods and self.param(name) != default.param(name):
                raise UsageError(f"{info.option} sets {name}'s parameter, but --methods does not include {name}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The settings as recorded with the run and in its checkpoints: the methods (when not the default
        pair) and the parameter of every method trained. mixup's α is always there, as it was before methods
        existed, so such a run reads, compares and resumes as it did."""
        d = dataclasses.asdict(self)
        if self.methods == DEFAULT_METHODS:
            del d["methods"]
        else:
            d["methods"] = list(self.methods)
        for name, info in METHODS.items():
            if info.param is not None and not info.recorded and name not in self.methods:
                del d[info.param]
        if self.train_n is None:
            del d["train_n"]  # as recorded before subsets existed
        return d

    @property
    def members(self) -> tuple[str, ...]:
        """The models a run trains: its methods, then the surrogate."""
        return (*self.methods, SURROGATE)

    @property
    def compared(self) -> tuple[str, ...]:
        """The methods compared with `erm`, in `METHODS` order."""
        return tuple(m for m in self.methods if m != BASELINE)

    def param(self, method: str) -> float:
        """The α (or smoothing factor) of `method` in this run; 0 for `erm` and the surrogate. With
        `with_params`, the one place a method's parameter is reached through its field's name."""
        field = METHODS[method].param if method in METHODS else None
        return 0.0 if field is None else float(getattr(self, field))

    def with_params(self, params: Mapping[str, float]) -> TrainConfig:
        """These settings with the parameter of each method in `params` (method -> α or factor) replaced."""
        fields = {METHODS[m].param: v for m, v in params.items()}
        if None in fields:
            raise UsageError(f"{', '.join(m for m in params if METHODS[m].param is None)} takes no parameter")
        return dataclasses.replace(self, **fields)

    def describe(self, method: str) -> str:
        """A method and its parameter, for people: 'mixup (α = 1)', 'label smoothing (s = 0.1)', 'ERM'."""
        info = METHODS[method]
        return info.label if info.param is None else f"{info.label} ({info.symbol} = {self.param(method):g})"

    def member_setting(self, member: str) -> tuple[str, float, int]:
        """(method, its parameter, seed) of a member: the surrogate is ERM under a seed of its own."""
        if member == SURROGATE:
            return BASELINE, 0.0, surrogate_seed(self.seed)
        return member, self.param(member), self.seed


def training_images(train_n: object) -> str:
    """'all training images', or 'a subset of N training images' (`train_n` as stored: shown, not trusted)."""
    return "all training images" if train_n is None else f"a subset of {train_n} training images"


def default_run_name(cfg: TrainConfig, *, seeded: bool = True) -> str:
    """`mnist-5k-smallcnn-a1-s0` (without `-s0`, the name of a group of seeds); with other methods than the
    pair, they are named instead of mixup's α."""
    what = f"a{cfg.alpha:g}" if cfg.methods == DEFAULT_METHODS else "-".join(cfg.compared)
    return f"{cfg.dataset}-{cfg.model}-{what}" + (f"-s{cfg.seed}" if seeded else "")


# --- attacks ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackInfo:
    """One attack as the command line, the database and the report know it (no torch needed)."""

    name: str  # the `attack` column and the key of `attacks.ATTACK_TYPES`
    label: str  # as tables and the report print it
    summary: str  # one line for --help
    iterative: bool  # takes --steps
    default_steps: int = 1
    default_step_size: str = "ε"  # the default step size, in words (the rule itself lives in the attack)
    example_eps: tuple[str, ...] = ("0", "0.01", "0.03", "0.1")  # the ε grid a suggested command uses
    options: tuple[str, ...] = ()  # the settings the attack object takes: steps, step_size, restarts, seed,
    # precision, early_stop
    command: str = ""  # the subcommand that runs it (default: its name), with `loss` for APGD's losses
    loss: str = "ce"
    strong: bool = False  # a strong attack: what the verdict "survives a strong attack" is judged by
    gradient: bool = True  # follows the input gradient (Square does not: it only reads the scores)

    @property
    def subcommand(self) -> str:
        return self.command or self.name


_ITERATIVE = ("steps", "step_size", "precision")
_RANDOM = ("steps", "restarts", "seed", "precision", "early_stop")
ATTACKS: dict[str, AttackInfo] = {
    "fgsm": AttackInfo(
        "fgsm", "FGSM", "fast gradient sign method: one step of ε (Goodfellow et al. 2015)", iterative=False
    ),
    "ifgsm": AttackInfo(
        "ifgsm", "I-FGSM", "iterative FGSM: equal steps of ε/steps, no random start (Kurakin et al. 2017)",
        iterative=True, default_steps=10, default_step_size="ε/steps", example_eps=("0.03", "0.1"),
        options=_ITERATIVE,
    ),
    "pgd": AttackInfo(
        "pgd", "PGD", "projected gradient descent: random start, steps of 2.5·ε/steps, restarts (Madry et al. 2018)",
        iterative=True, default_steps=50, default_step_size="2.5·ε/steps", example_eps=("0.03", "0.1"),
        options=(*_ITERATIVE, "restarts", "seed", "early_stop"), strong=True,
    ),
    "apgd-ce": AttackInfo(
        "apgd-ce", "APGD-CE", "auto-PGD on the cross-entropy: momentum, adaptive step size (Croce & Hein 2020)",
        iterative=True, default_steps=100, default_step_size="2ε, halved adaptively", example_eps=("0.03", "0.1"),
        options=_RANDOM, command="apgd", strong=True,
    ),
    "apgd-dlr": AttackInfo(
        "apgd-dlr", "APGD-DLR", "auto-PGD on the difference-of-logits ratio, which does not saturate (≥ 3 classes)",
        iterative=True, default_steps=100, default_step_size="2ε, halved adaptively", example_eps=("0.03", "0.1"),
        options=_RANDOM, command="apgd", loss="dlr", strong=True,
    ),
    "square": AttackInfo(
        "square", "Square", "score-based random search of ±ε squares, no gradient (Andriushchenko et al. 2020)",
        iterative=True, default_steps=5000, default_step_size="squares of p = 0.8 of the image, shrinking",
        example_eps=("0.03", "0.1"), options=("steps", "restarts", "seed"), strong=True, gradient=False,
    ),
}  # fmt: skip
PRECISIONS = ("fp32", "bf16")


class AttackSetting(NamedTuple):
    """What makes two evaluations of one attack at one ε the same: the one identity that a stage's `done`, a
    sweep cell, the claims' pairing and the database's rows all compare (`Attack.setting(eps)` gives an attack
    object's; `AttackSetting.of(row)` a stored row's, where rows stored before restarts, seeds and precision
    existed read as their defaults)."""

    steps: int
    step_size: float  # the step size at this ε
    restarts: int = 1
    seed: int = 0  # of the random starts
    precision: str = "fp32"
    early_stop: bool = False  # examples leave the loop at their first misclassified point

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> AttackSetting:
        return cls(row["steps"], row["step_size"], row.get("restarts", 1), row.get("seed", 0),
                   row.get("precision", "fp32"), bool(row.get("early_stop", 0)))  # fmt: skip


def attack_named(subcommand: str, loss: str = "ce") -> str:
    """The registry name of a subcommand (`apgd` with `--loss dlr` is "apgd-dlr")."""
    for name, info in ATTACKS.items():
        if info.subcommand == subcommand and info.loss == loss:
            return name
    raise UsageError(f"{subcommand} has no loss {loss!r}: choose ce or dlr")


def backend_available(backend: str) -> bool:
    import importlib.util  # here, not at the top: `robust-eval --help` stays fast

    return backend == "native" or importlib.util.find_spec(backend) is not None


@dataclass(frozen=True)
class AttackConfig:
    """One evaluation: `attack` at every ε of `eps`, white and/or black box, on the first `n` test images."""

    attack: str  # a key of ATTACKS
    eps: tuple[float, ...]
    steps: int | None = None  # iterative attacks; None: the attack's default
    step_size: float | None = None  # iterative attacks; None: the attack's rule
    mode: str = "both"
    backend: str = "native"
    n: int | None = None  # first n test examples; None = all
    batch_size: int = 256
    restarts: int = 1  # PGD and APGD: random restarts, the worst case per example kept
    precision: str = "fp32"  # "bf16": autocast in the attack's forward and backward (opt-in, not exact)
    compile: bool = False  # torch.compile the model inside the attack loop (opt-in)
    early_stop: bool = False  # PGD and APGD: an example leaves the loop at its first misclassified point

    @property
    def info(self) -> AttackInfo:
        return ATTACKS[self.attack]

    def validate(self) -> AttackConfig:
        if self.attack not in ATTACKS:
            raise UsageError(f"unknown attack {self.attack!r}: choose one of {', '.join(ATTACKS)}")
        if not self.eps:
            raise UsageError("--eps needs at least one value")
        for e in self.eps:
            if not (math.isfinite(e) and 0 <= e <= 1):
                raise UsageError(f"--eps values must lie in [0, 1] (pixel units; 8/255 is written 8/255), got {e:g}")
        if self.steps is not None and not (_is_int(self.steps) and self.steps >= 1):
            flag = "--queries" if self.attack == "square" else "--steps"  # a search counts queries
            raise UsageError(f"{flag} must be ≥ 1, got {self.steps}")
        if self.step_size is not None and not (math.isfinite(self.step_size) and self.step_size > 0):
            raise UsageError(f"--step-size must be > 0, got {self.step_size:g}")
        options = self.info.options
        if self.steps is not None and "steps" not in options:
            raise UsageError(f"{self.attack} takes no --steps: it is a single step")
        if self.step_size is not None and "step_size" not in options:
            raise UsageError(f"{self.attack} takes no --step-size: its step size is {self.info.default_step_size}")
        if not (_is_int(self.restarts) and self.restarts >= 1):
            raise UsageError(f"--restarts must be ≥ 1, got {self.restarts}")
        if self.restarts != 1 and "restarts" not in options:
            raise UsageError(f"{self.attack} takes no --restarts: it has no random start")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.precision != "fp32" and "precision" not in options:
            raise UsageError(f"{self.attack} runs in fp32 only (--precision applies to iterative attacks)")
        if self.early_stop and "early_stop" not in options:
            raise UsageError(f"{self.attack} takes no --early-stop: it keeps the paper's protocol (every step on "
                             "every example), as the libraries it agrees with do")  # fmt: skip
        if (self.precision != "fp32" or self.compile or self.early_stop) and self.backend != "native":
            raise UsageError("--precision, --compile and --early-stop apply to --backend native only")
        Mode.check(self.mode, "mode")
        if self.n is not None and self.n < 1:
            raise UsageError(f"--n must be ≥ 1, got {self.n}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        Backend.check(self.backend, "backend")
        if not backend_available(self.backend):
            raise UsageError(
                f"backend {self.backend!r} is not installed: it comes with the optional extra, "
                "pip install 'robust-eval[backends]'"
            )
        return dataclasses.replace(self, eps=tuple(dict.fromkeys(float(e) for e in self.eps)))  # unique, in order


# --- the probe --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeConfig:
    pairs: int = 2000
    lambdas: int = 21  # λ = linspace(0, 1, lambdas)
    same_class: str = "exclude"  # 'exclude': only pairs of different classes; 'include': any pair
    split: str = "train"
    resamples: int = 1000  # bootstrap resamples for the gradient-norm interval

    def validate(self) -> ProbeConfig:
        if self.pairs < 1:
            raise UsageError(f"--pairs must be ≥ 1, got {self.pairs}")
        if self.lambdas < 2:
            raise UsageError(f"--lambdas must be ≥ 2 (λ = 0 and 1 at least), got {self.lambdas}")
        SameClass.check(self.same_class, "--same-class")
        Split.check(self.split, "--split")
        return self


# --- diagnostics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiagnoseConfig:
    """The per-model diagnostics on the first `n` test examples (None: all): calibration, margins, input
    gradients, and accuracy under random sign noise of each ε of `eps` (None: `diagnose_eps(dataset)`)."""

    eps: tuple[float, ...] | None = None
    n: int | None = None
    batch_size: int | None = None  # points per forward (None: the device's default)

    def validate(self) -> DiagnoseConfig:
        if self.eps is not None:
            if not self.eps:
                raise UsageError("--eps needs at least one value")
            for e in self.eps:
                if not (math.isfinite(e) and 0 <= e <= 1):
                    raise UsageError(f"--eps values must lie in [0, 1] (pixel units), got {e:g}")
            if len({f"{e:g}" for e in self.eps}) != len(self.eps):
                raise UsageError(f"--eps lists a value more than once: {' '.join(f'{e:g}' for e in self.eps)}")
        if self.n is not None and not (_is_int(self.n) and self.n >= 1):
            raise UsageError(f"--n must be ≥ 1, got {self.n}")
        if self.batch_size is not None and not (_is_int(self.batch_size) and self.batch_size >= 1):
            raise UsageError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        return self


def claim_eps(dataset: str) -> float:
    """The ε the attack claims are read at on `dataset`; a test set the user brought (npz:PATH) takes the paper's
    ImageNet ε, 4/255."""
    return CLAIM_EPS.get(dataset, 4 / 255)


def diagnose_eps(dataset: str) -> tuple[float, ...]:
    """The noise levels the diagnostics use by default: half, once and twice the dataset's claim ε."""
    return tuple(f * claim_eps(dataset) for f in (0.5, 1.0, 2.0))


# --- the memorization sweep ------------------------------------------------------------------------


# --- the robustness sweep --------------------------------------------------------------------------


# --- presets of `robust-eval run` ------------------------------------------------------------------

# The ε at which the attack claims are judged, per dataset: the analogue of the paper's 4/255 on ImageNet
# (a perturbation small against the data's contrast, where single-step attacks are not yet saturated).
CLAIM_EPS: dict[str, float] = {
    "digits": 0.1, "mnist-5k": 0.1, "mnist": 0.1, "fashion-mnist": 0.1, "cifar10": 4 / 255, "cifar100": 4 / 255,
}  # fmt: skip
