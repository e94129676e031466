"""Attack speed against the libraries people would use instead, in one process, same model and data.

    python -m benchmarks.attacks [--device cpu|cuda] [--repeat 5] [--n 1000]

1. An 8-ε FGSM robust-accuracy curve: ours (one input gradient per batch shared by every ε) vs
   torchattacks' FGSM run once per ε vs foolbox's LinfFastGradientAttack with `epsilons=[...]`, and vs
   the floor: one forward+backward per batch, then one forward per further ε.
2. 10-step I-FGSM at one ε: ours vs torchattacks' BIM vs foolbox's LinfBasicIterativeAttack, and vs the
   floor: 10 forward+backward passes and one forward per batch.
Each figure is the median of --repeat timings after one warm-up; the accuracies must agree.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from robustbench_mixup.attacks import frozen, input_gradient, robust_accuracy
from robustbench_mixup.data import load_dataset
from robustbench_mixup.train import TrainConfig, init_model, resolve_device, train_epoch

EPS8 = [0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3]


def timed(fn: Callable[[], object], repeat: int, device: torch.device) -> tuple[float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def batches(x: torch.Tensor, y: torch.Tensor, size: int):
    for i in range(0, len(y), size):
        yield x[i : i + size], y[i : i + size]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=250)
    args = ap.parse_args()
    import foolbox as fb
    import torchattacks

    dev = resolve_device(args.device)
    data = load_dataset("mnist-5k")
    model = init_model(TrainConfig(model="smallcnn"), data, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train_epoch(model, opt, data.train_images, data.train_labels, alpha=0.0, num_classes=10, batch_size=128,
                seed=0, epoch=0, augment=False)  # fmt: skip
    model = model.to(dev).eval()
    for p in model.parameters():  # the libraries' models are frozen the same way ours are
        p.requires_grad_(False)
    x, y = data.test_images[: args.n].to(dev), data.test_labels[: args.n].to(dev)
    bs, n = args.batch_size, len(y)

    def acc_of(adv_batches: list) -> float:  # crafted first: the libraries need autograd on
        with torch.no_grad():
            return sum(int((model(a).argmax(1) == yb).sum()) for a, yb in adv_batches) / n

    # --- FGSM curve
    def ours_fgsm():
        return robust_accuracy(model, x, y, EPS8, batch_size=bs).tolist()

    def ta_fgsm():
        return [acc_of([(torchattacks.FGSM(model, eps=e)(xb, yb), yb) for xb, yb in batches(x, y, bs)]) for e in EPS8]

    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0))

    def fb_fgsm():
        hits = torch.zeros(len(EPS8))
        for xb, yb in batches(x, y, bs):
            _, _, success = fb.attacks.LinfFastGradientAttack(random_start=False)(fmodel, xb, yb, epsilons=EPS8)
            hits += (~success).sum(1).cpu()
        return (hits / n).tolist()

    def floor_fgsm():
        with frozen(model), torch.no_grad():
            for xb, yb in batches(x, y, bs):
                grad, _ = input_gradient(model, xb, yb)
                for _ in EPS8[1:]:
                    model(xb + 0.01 * grad)

    # --- I-FGSM at one ε
    e = 0.1

    def ours_ifgsm():
        return robust_accuracy(model, x, y, [e], attack="ifgsm", batch_size=bs).tolist()

    def ta_bim():
        return [
            acc_of(
                [(torchattacks.BIM(model, eps=e, alpha=e / 10, steps=10)(xb, yb), yb) for xb, yb in batches(x, y, bs)]
            )
        ]

    def fb_bim():
        atk = fb.attacks.LinfBasicIterativeAttack(abs_stepsize=e / 10, steps=10, random_start=False)
        return [sum(int((~atk(fmodel, xb, yb, epsilons=[e])[2]).sum()) for xb, yb in batches(x, y, bs)) / n]

    def floor_ifgsm():
        with frozen(model):
            for xb, yb in batches(x, y, bs):
                for _ in range(10):
                    grad, _ = input_gradient(model, xb, yb)
                with torch.no_grad():
                    model(xb + 0.01 * grad)

    rows = []
    for group, fns in (
        (
            "fgsm_curve (8 ε)",
            [("ours", ours_fgsm), ("torchattacks", ta_fgsm), ("foolbox", fb_fgsm), ("floor", floor_fgsm)],
        ),
        (
            "ifgsm (10 steps)",
            [("ours", ours_ifgsm), ("torchattacks", ta_bim), ("foolbox", fb_bim), ("floor", floor_ifgsm)],
        ),
    ):
        results = {name: timed(fn, args.repeat, dev) for name, fn in fns}
        ours_t = results["ours"][0]
        for name, (t, acc) in results.items():
            accs = "" if acc is None else " ".join(f"{a:.3f}" for a in acc)
            rows.append((group, name, t, t / ours_t, accs))
    where = torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"smallcnn on mnist-5k, {n} test images, batch {bs}, {where}; median of {args.repeat}")
    print(f"{'benchmark':<18} {'impl':<13} {'seconds':>8} {'t/ours':>7}  accuracies")
    for group, name, t, ratio, accs in rows:
        print(f"{group:<18} {name:<13} {t:>8.4f} {ratio:>7.2f}  {accs}")


if __name__ == "__main__":
    main()
