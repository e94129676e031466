"""13. `batched`: M models trained as one vmapped computation vs one after another.

A run trains one model per method from the same initial weights on the same batches. Here M copies of
smallcnn (the same initial weights) train for one epoch of ERM on mnist-5k images (SGD: lr 0.1,
momentum 0.9, weight decay 1e-4, batch 128; all models see the same batches), two ways:

- `sequential`: the package's `train_epoch` once per model, each model with its own torch.optim.SGD
  (what `train_run` does per epoch). Every model runs ERM, so only the batching is compared.
- `batched`: the M models' parameters stacked (`torch.func.stack_module_state`); per batch, one call of
  `vmap(grad_and_value(loss))` over the model dimension gives every model's loss and gradient (the
  batch is broadcast: vmap runs each convolution as one grouped convolution with M groups, the shared
  batch repeated M times along the channels for the first, and the linear layers as batched matrix
  products); then torch.optim.SGD's update, applied by hand to the stacked tensors: d_p = g + wd·p;
  buf = momentum·buf + d_p (buf = d_p on the first step); p -= lr·buf.

Images/s count an image once per model it trains (M × the epoch's images / seconds). The first call of
each way (untimed, the warm-up) starts from the shared initial weights; after it, the weights of the
two ways are compared. On the CPU (float32) they agree to float tolerance, not bitwise: the vmapped
convolutions and matrix products are other kernels than the per-model ones (grouped vs plain
convolution, batched vs plain matmul), which sum the same products in another order. On CUDA both
ways run under bf16 autocast, as `train_epoch` does, and the difference is reported without a bound.

The package's smallcnn does not run under `grad` as it is: its `MaxPool2x2` (models.py) uses an
autograd.Function without `setup_context`, which torch.func transforms refuse. The batched way
therefore runs a copy of the model whose pools are `VmapMaxPool2x2`: the same forward and the same
gradient route written in the form torch.func accepts. (`F.max_pool2d` would also do, but its CPU
kernel is what MaxPool2x2 exists to avoid: it would slow the batched way down for no reason of its own.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from robustbench_mixup.learning import seeding
from robustbench_mixup.learning.data import load_dataset
from robustbench_mixup.learning.devices import as_batch, autocast
from robustbench_mixup.learning.loop import make_optimizer, new_trainable, train_epoch
from robustbench_mixup.learning.models import MaxPool2x2
from robustbench_mixup.settings.config import TrainConfig

from .timing import Result, Target, measure

MODELS = (2, 5)  # M, the models trained together
SEED = 0  # of the shared initial weights and of the batch order
TOLERANCE = 1e-4  # the largest |Δw| accepted between the two ways in float32 (CPU): measured ~1e-6
WHY_NOT_BITWISE = "vmap runs grouped convolutions and batched matmuls: the same sums in another order"


def images_for(device: torch.device, quick: bool) -> int:
    """Images per epoch: all 4,000 of mnist-5k's training split on CUDA; 512 (4 batches) on the CPU, where
    an epoch of them takes smallcnn about 1 s on 2 cores and each way is run 6 times for M = 2 and for 5."""
    if quick:
        return 256
    return 4000 if device.type == "cuda" else 512


# --- a vmappable MaxPool2x2 -----------------------------------------------------------------------


def _corners(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(x[..., i::2, j::2] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))  # row-major


class _MaxPoolFunction(torch.autograd.Function):
    """`models._MaxPool2x2Function` in torch.func's form: the forward without `ctx`, `setup_context`
    apart, and a vmap rule generated from them. Same values, same gradient route (the window's first
    maximum in row-major order); the backward scatters out of place, as a generated vmap rule needs."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        a, b, c, d = _corners(x)
        out = torch.maximum(torch.maximum(a, b), torch.maximum(c, d))
        u8 = torch.uint8
        which = (a != out).to(u8) * (1 + (b != out).to(u8) * (1 + (c != out).to(u8)))  # first maximum
        return out, which

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (which,) = ctx.saved_tensors
        n, c, h, w = grad.shape
        windows = grad.new_zeros(n, c, h, w, 4).scatter(-1, which.long().unsqueeze(-1), grad.unsqueeze(-1))
        return windows.view(n, c, h, w, 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * h, 2 * w)


class VmapMaxPool2x2(nn.Module):
    """`models.MaxPool2x2` that runs under `vmap` and `grad`: torch's kernel on CUDA and for odd sizes,
    the four-corner maximum on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.ndim != 4 or x.shape[-2] % 2 or x.shape[-1] % 2:
            return F.max_pool2d(x, 2)
        return _MaxPoolFunction.apply(x)[0]


def vmappable(model: nn.Module) -> nn.Module:
    """A copy of `model` with every `MaxPool2x2` replaced by `VmapMaxPool2x2` (no parameters change)."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, MaxPool2x2):
                setattr(module, name, VmapMaxPool2x2())
    return model


# --- the two ways ---------------------------------------------------------------------------------


def sequential_epoch(models: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer], images: torch.Tensor,
                     labels: torch.Tensor, cfg: TrainConfig, num_classes: int) -> list[dict[str, float]]:  # fmt: skip
    """One ERM epoch of the package's loop per model, all on the batches of (SEED, epoch 0)."""
    options = {"method": "erm", "param": 0.0, "num_classes": num_classes, "batch_size": cfg.batch_size, "seed": SEED,
               "epoch": 0, "augment": False}  # fmt: skip
    return [train_epoch(m, opt, images, labels, **options) for m, opt in zip(models, optimizers, strict=True)]


class StackedSGD:
    """M models of one architecture as stacked parameters (leading dimension M), trained together by
    one vmapped loss-and-gradient call per batch and torch.optim.SGD's update on the stacked tensors."""

    def __init__(self, models: Sequence[nn.Module], cfg: TrainConfig) -> None:
        params, self.buffers = stack_module_state(list(models))
        self.params = {k: v.detach() for k, v in params.items()}  # updated in place, outside autograd
        self.momentum: dict[str, torch.Tensor] = {}
        self.cfg = cfg
        template = vmappable(models[0]).to("meta")  # the structure only: functional_call brings the tensors

        def loss(params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with autocast(x.device):  # bf16 on CUDA, as train_epoch; a no-op on the CPU
                logits = functional_call(template, (params, buffers), (x,))
            logits = logits.float()
            return F.cross_entropy(logits, y), logits.detach()

        # One model's (gradient, (loss, logits)) per slice of the stacked tensors; the batch is shared.
        self._step: Callable = vmap(grad_and_value(loss, has_aux=True), in_dims=(0, 0, None, None))

    def epoch(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One ERM epoch on the batches `train_epoch` draws for (SEED, epoch 0); train_loss and train_acc
        per model, as tensors of shape (M,)."""
        bs, dev = self.cfg.batch_size, images.device
        perm = torch.randperm(len(labels), generator=seeding.generator(SEED, "order", 0)).to(dev)
        steps = len(labels) // bs
        m = len(next(iter(self.params.values())))
        loss_sum, hits = torch.zeros(m, device=dev), torch.zeros(m, device=dev)
        for step in range(steps):
            idx = perm[step * bs : (step + 1) * bs]
            x, y = as_batch(images[idx]), labels[idx]
            grads, (loss, logits) = self._step(self.params, self.buffers, x, y)
            self.update(grads)
            loss_sum += loss
            hits += (logits.argmax(-1) == y).sum(-1)
        return {"train_loss": loss_sum / steps, "train_acc": hits / (steps * bs)}

    @torch.no_grad()
    def update(self, grads: dict[str, torch.Tensor]) -> None:
        """torch.optim.SGD's step (no dampening, no Nesterov), the same operations in the same order."""
        lr, wd, mu = self.cfg.lr, self.cfg.weight_decay, self.cfg.momentum
        for name, p in self.params.items():
            d_p = grads[name].add(p, alpha=wd)
            buf = self.momentum.get(name)
            if buf is None:
                self.momentum[name] = buf = torch.clone(d_p).detach()
            else:
                buf.mul_(mu).add_(d_p, alpha=1.0)
            p.add_(buf, alpha=-lr)


def weight_difference(models: Sequence[nn.Module], stacked: StackedSGD) -> float:
    """max |w_sequential − w_batched| over every parameter of every model."""
    worst = 0.0
    for i, model in enumerate(models):
        for name, p in model.named_parameters():
            worst = max(worst, (p.detach() - stacked.params[name][i]).abs().max().item())
    return worst


# --- the benchmark --------------------------------------------------------------------------------


def batched(device: torch.device, *, repeat: int, n: int, models: Sequence[int] = MODELS) -> list[Result]:
    """One Result per M: `sequential` and `batched` epochs over the first `n` training images of mnist-5k."""
    dataset = load_dataset("mnist-5k")
    cfg = TrainConfig(dataset="mnist-5k", model="smallcnn")  # lr 0.1, momentum 0.9, wd 1e-4, batch 128
    initial, _ = new_trainable(cfg, dataset, seed=SEED, device=device)
    x, y = dataset.train_images[:n].to(device), dataset.train_labels[:n].to(device)
    seen = (len(y) // cfg.batch_size) * cfg.batch_size
    results = []
    for m in models:
        seq = [copy.deepcopy(initial) for _ in range(m)]
        opts = [make_optimizer(model, cfg) for model in seq]
        stacked = StackedSGD([copy.deepcopy(initial) for _ in range(m)], cfg)
        fns = {
            "sequential": lambda s=seq, o=opts: sequential_epoch(s, o, x, y, cfg, dataset.num_classes),
            "batched": lambda b=stacked: b.epoch(x, y),
        }
        first = {name: fn() for name, fn in fns.items()}  # the warm-up: one epoch each from the shared start
        diff = weight_difference(seq, stacked)
        losses = zip(first["sequential"], first["batched"]["train_loss"].tolist(), strict=True)
        loss_diff = max(abs(s["train_loss"] - b) for s, b in losses)
        timings, _ = measure(fns, repeat=repeat, device=device, warmup=0)
        result = Result("batched", f"smallcnn/mnist-5k M={m}", timings)
        result.rates = {k: m * seen / t.median for k, t in timings.items()}
        result.notes = {
            "models": m, "images": seen, "batch": cfg.batch_size, "method": "erm", "warmup": 1,
            "speedup": result.ratio("sequential", "batched"),
            "max_abs_weight_difference": diff, "bit_identical": diff == 0.0,
            "max_abs_train_loss_difference": loss_diff,
            "why": "bit-identical" if diff == 0.0 else WHY_NOT_BITWISE,
            "maxpool": "MaxPool2x2 replaced by VmapMaxPool2x2 in the batched way (no setup_context: no torch.func)",
        }  # fmt: skip
        if device.type == "cpu":  # float32: only the order of the sums differs (bf16 autocast on CUDA)
            # in units of 1e-6, so the table's three decimals show it
            result.targets.append(Target("max |Δw| batched vs sequential (1e-6)", diff * 1e6, "<=", TOLERANCE * 1e6))
        results.append(result)
    return results
