"""Training throughput of the paired loop against the bare model, on CIFAR-shaped random tensors.

    python -m benchmarks.train_throughput --device cuda --width 64

Reports images/s for one epoch of `erm` (α = 0) and of `mixup` (α = 1) through `train.train_epoch`
(index gathers, crop+flip, mixing, SGD step, bf16 autocast and channels_last on CUDA), and for the
bare floor: forward+backward+step of the same model on one fixed batch, no data handling at all.
Each figure is the median of --repeat epochs after one warm-up epoch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustbench_mixup.models import build_model
from robustbench_mixup.train import autocast, resolve_device, train_epoch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--n", type=int, default=10240, help="images per epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 3, 32, 32, generator=g).to(dev)
    y = torch.randint(0, 10, (args.n,), generator=g).to(dev)

    def fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        m = build_model("preact-resnet18", in_shape=[3, 32, 32], num_classes=10, mean=[0.5] * 3, std=[0.25] * 3,
                        width=args.width).to(dev)  # fmt: skip
        if dev.type == "cuda":
            m = m.to(memory_format=torch.channels_last)
        return m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def epoch_rate(alpha: float) -> float:
        m, opt = fresh()
        rates = []
        for e in range(args.repeat + 1):
            _sync(dev)
            t0 = time.perf_counter()
            train_epoch(m, opt, x, y, alpha=alpha, num_classes=10, batch_size=args.batch_size, seed=0, epoch=e,
                        augment=True)  # fmt: skip
            _sync(dev)
            if e:  # the first epoch warms up kernels and the allocator
                rates.append((args.n // args.batch_size) * args.batch_size / (time.perf_counter() - t0))
        return statistics.median(rates)

    def floor_rate() -> float:
        m, opt = fresh()
        xb, yb = x[: args.batch_size], y[: args.batch_size]
        if dev.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        steps = args.n // args.batch_size
        rates = []
        for e in range(args.repeat + 1):
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(steps):
                with autocast(dev):
                    loss = torch.nn.functional.cross_entropy(m(xb).float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            _sync(dev)
            if e:
                rates.append(steps * args.batch_size / (time.perf_counter() - t0))
        return statistics.median(rates)

    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    floor = floor_rate()
    print(f"preact-resnet18 width {args.width}, batch {args.batch_size}, {args.n} CIFAR-shaped images, {name}")
    print(f"{'loop':<22} {'images/s':>10} {'vs floor':>9}")
    print(f"{'floor (fwd+bwd+step)':<22} {floor:>10,.0f} {1.0:>9.2f}")
    for label, alpha in (("erm epoch", 0.0), ("mixup epoch", 1.0)):
        rate = epoch_rate(alpha)
        print(f"{label:<22} {rate:>10,.0f} {floor / rate:>9.2f}")


if __name__ == "__main__":
    main()
