"""Speed of robust-eval, side by side with what people would use instead; one process, one table.

    python -m benchmarks                      # everything, CPU or GPU (auto), median of 5 after a warm-up
    python -m benchmarks --device cuda        # on the GPU, plus preact-resnet18 (width 64) paired throughput
    python -m benchmarks --quick              # tiny sizes, one repetition: checks that it all still runs
    python -m benchmarks --only fgsm_curve,ifgsm --repeat 9

Every figure is the median of --repeat timings taken round-robin after one untimed warm-up call of each
implementation (min and max are shown too). Ratios are against the first implementation of a row group
(ours). The table goes to stdout and, with the machine and versions, to benchmarks/results.json.
Targets are reported as met or missed; the command's exit status does not depend on them.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .timing import Result

BENCHMARKS = ("fgsm_curve", "ifgsm", "mixup_overhead", "pair", "loader", "probe", "cli_startup", "paired_throughput")
HERE = Path(__file__).resolve().parent


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: auto)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and one repetition (what CI runs)")
    ap.add_argument("--repeat", type=int, default=None, help="timed repetitions per figure (default 5; --quick: 1)")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default benchmarks/results.json; --quick: benchmarks/results-quick.json)",
    )
    args = ap.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        ap.error(f"--repeat must be ≥ 1, got {args.repeat}")
    args.repeat = args.repeat or (1 if args.quick else 5)
    if args.only is not None:
        args.only = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in args.only if name not in BENCHMARKS]
        if unknown or not args.only:
            given = ", ".join(unknown) or "(none given)"
            ap.error(f"--only: unknown benchmark(s) {given}; choose from {', '.join(BENCHMARKS)}")
    if args.out is None:
        args.out = HERE / ("results-quick.json" if args.quick else "results.json")
    return args


def _fmt_seconds(s: float) -> str:
    return f"{s * 1e3:8.1f} ms" if s < 1 else f"{s:8.3f} s "


def table(results: list[Result]) -> str:
    lines = [f"{'benchmark':<18} {'setup':<34} {'implementation':<20} {'median':>11} {'min':>11} {'max':>11} "
             f"{'× first':>8} {'per s':>10}"]  # fmt: skip
    for r in results:
        first = next(iter(r.timings.values())).median
        for name, t in r.timings.items():
            rate = f"{r.rates[name]:>10,.0f}" if name in r.rates else ""
            lines.append(f"{r.benchmark:<18} {r.setup:<34} {name:<20} {_fmt_seconds(t.median)} {_fmt_seconds(t.min)} "
                         f"{_fmt_seconds(t.max)} {t.median / first:>8.2f} {rate}")  # fmt: skip
        for tg in r.targets:
            verdict = "met" if tg.met else "MISSED"
            lines.append(f"{'':<18} {'':<34} target: {tg.label} {tg.op} {tg.bound:g}: {tg.value:.3f}  {verdict}")
        if "data_ratio" in r.notes:
            over = r.notes["data_seconds"]
            lines.append(
                f"{'':<18} {'':<34} data path alone (epoch − floor): ours {over['ours']:.3f} s, "
                f"reference-style {over['reference-style']:.3f} s, ratio {r.notes['data_ratio']:.1f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    from robustbench_mixup.devices import resolve_device
    from robustbench_mixup.errors import UsageError
    from robustbench_mixup.fsutil import atomic_write_json

    from . import attacks, cli_startup, probe, setups, training

    try:
        device = resolve_device(args.device)
    except UsageError as exc:
        print(f"python -m benchmarks: error: {exc}", file=sys.stderr)
        return 2
    chosen = args.only or [b for b in BENCHMARKS if b != "paired_throughput" or device.type == "cuda" or args.quick]
    torch.manual_seed(0)
    size = setups.sizes(device, args.quick)
    built: dict[str, setups.Setup] = {}

    def setup(key: str) -> setups.Setup:
        if key not in built:
            print(f"  preparing {key} (one epoch of training) …", file=sys.stderr, flush=True)
            built[key] = setups.build(key, size[key], device)
        return built[key]

    kw = {"repeat": args.repeat}
    jobs: list[tuple[str, Callable[[], Result]]] = []
    for name in chosen:
        if name == "cli_startup":
            jobs.append((name, lambda: cli_startup.cli_startup(**kw)))
        elif name == "paired_throughput":
            width, n = (8, 256) if args.quick else (64, 10240)
            jobs.append((name, lambda w=width, n=n: training.paired_throughput(device, width=w, n=n, **kw)))
        else:
            for key in ("mnist", "cifar"):
                if name == "probe":
                    fn = lambda k=key: probe.probe(setup(k), pairs=size[k].pairs, **kw)  # noqa: E731
                else:
                    bench = getattr(attacks, name, None) or getattr(training, name)
                    fn = lambda b=bench, k=key: b(setup(k), **kw)  # noqa: E731
                jobs.append((f"{name} [{key}]", fn))

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"robust-eval benchmarks on {where} ({_cpu_name()}); torch {torch.__version__}; "
          f"median of {args.repeat} after a warm-up{' (quick sizes)' if args.quick else ''}", flush=True)  # fmt: skip
    results: list[Result] = []
    started = time.perf_counter()
    for k, (label, fn) in enumerate(jobs, 1):
        print(f"[{k}/{len(jobs)}] {label} …", file=sys.stderr, flush=True)
        results.append(fn())
    print(table(results))
    missed = [f"{r.benchmark} [{r.setup}]: {t.label}" for r in results for t in r.targets if not t.met]
    print(f"{len(missed)} target(s) missed" + (": " + "; ".join(missed) if missed else ""))
    atomic_write_json(args.out, {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": time.perf_counter() - started,
        "device": where, "cpu": _cpu_name(), "torch": torch.__version__, "python": platform.python_version(),
        "commit": _commit(), "quick": args.quick, "repeat": args.repeat,
        "results": [r.to_dict() for r in results],
    })  # fmt: skip
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
