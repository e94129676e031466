"""Speed of robust-eval, side by side with what people would use instead; one process, one table.

    python -m benchmarks                      # everything, CPU or GPU (auto), median of 5 after a warm-up
    python -m benchmarks --device cuda        # on the GPU, plus preact-resnet18 (width 64) paired throughput
    python -m benchmarks --quick              # tiny sizes, one repetition: checks that it all still runs
    python -m benchmarks --only fgsm_curve,ifgsm --repeat 9
    python -m benchmarks --run checkpoints/quick  # pgd, apgd, square on the quick preset's ERM and mixup

Every figure is the median of --repeat timings taken round-robin after one untimed warm-up call of each
implementation (min and max are shown too); the 50- and 100-step attacks (pgd, apgd, precision,
multi_eps), whose calls take seconds to minutes on a CPU, default to 3 repetitions, with no warm-up on
the CPU. Ratios are against the first implementation of a row group (ours). The table goes to stdout
and, with the machine and versions, to benchmarks/results.json, rewritten after every benchmark so that
a run cut short keeps what it measured; with --only, the entries of the benchmarks not run are kept
from the file already there (each entry says when and where it was measured). Targets are reported as
met or missed; the command's exit status does not depend on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .timing import Result

BENCHMARKS = (
    "fgsm_curve", "ifgsm", "mixup_overhead", "pair", "loader", "probe", "cli_startup", "paired_throughput",
    "pgd", "apgd", "square", "precision", "multi_eps", "batched",
)  # fmt: skip
ITERATIVE = ("pgd", "apgd", "square", "multi_eps")  # on `Sizes.iterative` images
ON_RUN = ("pgd", "apgd", "square")  # what --run times on a run's models
HEAVY = (*ITERATIVE, "precision")  # calls of seconds to minutes on a CPU: HEAVY_REPEAT repetitions by default
DEFAULT_REPEAT, HEAVY_REPEAT = 5, 3
STAMP = ("created", "commit", "device", "cpu", "torch", "quick")  # where and when an entry was measured
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
    ap.add_argument(
        "--repeat",
        type=int,
        default=None,
        help=f"timed repetitions per figure (default {DEFAULT_REPEAT}; {HEAVY_REPEAT} for {', '.join(HEAVY)}; "
        "--quick: 1)",
    )
    ap.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    ap.add_argument(
        "--run",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"time {', '.join(ON_RUN)} on the models of a finished `robust-eval run` (its folder "
        "checkpoints/NAME, for example the quick preset's) instead of the one-epoch setups",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default benchmarks/results.json; --quick: benchmarks/results-quick.json; --run: "
        "benchmarks/results-run.json)",
    )
    ap.add_argument("--n", type=int, default=None, help="with --run: test images attacked (default: 250 on a "
                    "CPU, 1,000 on CUDA)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.n is not None and (args.run is None or args.n < 1):
        ap.error(f"--n must be ≥ 1 and comes with --run, got {args.n}")
    if args.repeat is not None and args.repeat < 1:
        ap.error(f"--repeat must be ≥ 1, got {args.repeat}")
    args.heavy_repeat = args.repeat or (1 if args.quick else HEAVY_REPEAT)
    args.repeat = args.repeat or (1 if args.quick else DEFAULT_REPEAT)
    if args.only is not None:
        args.only = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in args.only if name not in BENCHMARKS]
        if unknown or not args.only:
            given = ", ".join(unknown) or "(none given)"
            ap.error(f"--only: unknown benchmark(s) {given}; choose from {', '.join(BENCHMARKS)}")
    if args.run is not None:
        args.only = args.only or list(ON_RUN)
        off = [name for name in args.only if name not in ON_RUN]
        if off:
            ap.error(f"--run times {', '.join(ON_RUN)} only, not {', '.join(off)}")
    if args.out is None:
        args.out = HERE / ("results-quick.json" if args.quick else "results-run.json" if args.run else "results.json")
    return args


def _fmt_seconds(s: float) -> str:
    return f"{s * 1e3:8.1f} ms" if s < 1 else f"{s:8.3f} s "


def table(results: list[Result]) -> str:
    lines = [f"{'benchmark':<18} {'setup':<34} {'implementation':<20} {'median':>11} {'min':>11} {'max':>11} "
             f"{'× first':>8} {'per s':>10}"]  # fmt: skip
    pad = f"{'':<18} {'':<34}"
    for r in results:
        if not r.timings:
            lines.append(f"{r.benchmark:<18} {r.setup:<34} {r.notes.get('skipped', 'nothing timed')}")
            continue
        first = next(iter(r.timings.values())).median
        for name, t in r.timings.items():
            rate = f"{r.rates[name]:>10,.0f}" if name in r.rates else ""
            lines.append(f"{r.benchmark:<18} {r.setup:<34} {name:<20} {_fmt_seconds(t.median)} {_fmt_seconds(t.min)} "
                         f"{_fmt_seconds(t.max)} {t.median / first:>8.2f} {rate}")  # fmt: skip
        for tg in r.targets:
            verdict = "met" if tg.met else "MISSED"
            lines.append(f"{pad} target: {tg.label} {tg.op} {tg.bound:g}: {tg.value:.3f}  {verdict}")
        if "data_ratio" in r.notes:
            over = r.notes["data_seconds"]
            lines.append(
                f"{pad} data path alone (epoch − floor): ours {over['ours']:.3f} s, "
                f"reference-style {over['reference-style']:.3f} s, ratio {r.notes['data_ratio']:.1f}"
            )
        lines += [f"{pad} {line}" for line in note_lines(r.notes)]
    return "\n".join(lines)


def _acc(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.3f}" for v in value) + "]"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def note_lines(notes: dict[str, Any]) -> list[str]:
    """The notes worth a line under a benchmark's rows: accuracies, precision trade-offs, what was skipped."""
    lines = []
    n = f" on {notes['n']}" if "n" in notes else ""
    if "accuracies" in notes:
        lines.append(f"robust accuracy{n}: " + ", ".join(f"{k} {_acc(v)}" for k, v in notes["accuracies"].items()))
    if "speed_vs_fp32" in notes:
        parts = [f"{k} ×{notes['speed_vs_fp32'][k]:.2f} speed, {d:+.2f} points"
                 for k, d in notes["accuracy_difference_points"].items()]  # fmt: skip
        lines.append("vs fp32: " + "; ".join(parts))
    if "compile_seconds" in notes:
        lines.append(f"torch.compile: {notes['compile_seconds']:.1f} s of compilation (graph caches off), in warm-up")
    if "early_stop_ceiling" in notes:
        lines.append(f"early stop can be about ×{notes['early_stop_ceiling']:.2f} the fastest peer here at most "
                     "(the surviving examples take every step)")  # fmt: skip
    if "seed_interval" in notes:
        low, high = notes["seed_interval"]
        seeds = ", ".join(f"{a:.3f}" for a in notes["seed_accuracies"])
        lines.append(f"ours under {len(notes['seed_accuracies'])} seeds: {seeds}; interval [{low:.3f}, {high:.3f}]")
        above = {k: v for k, v in notes.get("above_seed_interval", {}).items() if v > 0}
        if above:
            lines.append("above ours' interval (a weaker search, see benchmarks/attacks.py square): "
                         + ", ".join(f"{k} by {100 * v:.1f} points" for k, v in above.items()))  # fmt: skip
    if "speedup" in notes:
        lines.append(f"one call vs loop: ×{notes['speedup']:.2f}")
    lines += [f"{key}: {notes[key]}" for key in ("art", "adv-lib", "compile") if isinstance(notes.get(key), str)]
    return lines


def _family(entry: dict[str, Any]) -> str:
    """The benchmark an entry of results.json belongs to ("precision ifgsm-10" → "precision")."""
    return str(entry.get("benchmark", "")).split(" ")[0]


def merge(previous: Any, fresh: dict[str, Any], ran: set[str]) -> dict[str, Any]:
    """`fresh` with the entries of `previous` (an earlier results file) whose benchmark was not run now,
    each keeping the stamp of the run that measured it; entries in BENCHMARKS order. Anything
    unreadable in `previous` is dropped."""
    if not isinstance(previous, dict) or not isinstance(previous.get("results"), list):
        return fresh
    stamp = {k: previous.get(k) for k in STAMP}
    kept = [{**entry, "measured": entry.get("measured", stamp)} for entry in previous["results"]
            if isinstance(entry, dict) and _family(entry) not in ran]  # fmt: skip
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    entries = sorted([*kept, *fresh["results"]], key=lambda e: order.get(_family(e), len(order)))
    return {**fresh, "results": entries}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    from robustbench_mixup.learning.devices import resolve_device
    from robustbench_mixup.settings.errors import UsageError
    from robustbench_mixup.settings.fsutil import atomic_write_json

    from . import attacks, batched, cli_startup, probe, setups, training

    try:
        device = resolve_device(args.device)
    except UsageError as exc:
        print(f"python -m benchmarks: error: {exc}", file=sys.stderr)
        return 2
    chosen = args.only or [b for b in BENCHMARKS if b != "paired_throughput" or device.type == "cuda" or args.quick]
    torch.manual_seed(0)
    size = setups.sizes(device, args.quick)
    built: dict[str, setups.Setup] = {}
    keys: tuple[str, ...] = ("mnist", "cifar")
    if args.run is not None:
        try:
            built = setups.from_run(args.run, device)
        except UsageError as exc:
            print(f"python -m benchmarks: error: {exc}", file=sys.stderr)
            return 2
        keys = tuple(built)
        iterative = args.n or size["mnist"].iterative  # the MNIST sizes: 250 test images on the CPU
        size = {k: dataclasses.replace(size["mnist"], iterative=iterative) for k in keys}

    def setup(key: str) -> setups.Setup:
        if key not in built:
            print(f"  preparing {key} (one epoch of training) …", file=sys.stderr, flush=True)
            built[key] = setups.build(key, size[key], device)
        return built[key]

    kw = {"repeat": args.repeat}
    jobs: list[tuple[str, Callable[[], Result | list[Result]]]] = []
    for name in chosen:
        if name == "cli_startup":
            jobs.append((name, lambda: cli_startup.cli_startup(**kw)))
        elif name == "paired_throughput":
            width, n = (8, 256) if args.quick else (64, 10240)
            jobs.append((name, lambda w=width, n=n: training.paired_throughput(device, width=w, n=n, **kw)))
        elif name == "batched":  # smallcnn on mnist-5k images only, M = 2 and 5 models
            n = batched.images_for(device, args.quick)
            jobs.append((name, lambda n=n: batched.batched(device, n=n, **kw)))
        elif name == "multi_eps" and device.type != "cuda":
            jobs.append((name, lambda: attacks.multi_eps(None, repeat=args.heavy_repeat, n=0)))  # skipped
        else:
            for key in keys:
                if name == "probe":
                    fn = lambda k=key: probe.probe(setup(k), pairs=size[k].pairs, **kw)  # noqa: E731
                elif name in HEAVY:
                    n = size[key].iterative if name in ITERATIVE else size[key].precision
                    bench = getattr(attacks, name)
                    fn = lambda b=bench, k=key, n=n: b(setup(k), repeat=args.heavy_repeat, n=n, quick=args.quick)  # noqa: E731
                else:
                    bench = getattr(attacks, name, None) or getattr(training, name)
                    fn = lambda b=bench, k=key: b(setup(k), **kw)  # noqa: E731
                jobs.append((f"{name} [{key}]", fn))

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"robust-eval benchmarks on {where} ({_cpu_name()}); torch {torch.__version__}; "
          f"median of {args.repeat} after a warm-up ({args.heavy_repeat} for the 50/100-step attacks)"
          f"{' (quick sizes)' if args.quick else ''}", flush=True)  # fmt: skip
    previous = None
    if args.only is not None:  # what the file held before this run: its other benchmarks' entries stay
        try:
            previous = json.loads(args.out.read_text())
        except (OSError, ValueError):
            previous = None
    results: list[Result] = []
    started = time.perf_counter()

    def save(partial: bool) -> None:
        """Write the results so far: after every job (`"partial": true`, so a run cut short keeps what it
        measured) and at the end."""
        stamp = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": _commit(), "device": where,
                 "cpu": _cpu_name(), "torch": torch.__version__, "quick": args.quick}  # fmt: skip
        fresh = {
            **stamp, "seconds": time.perf_counter() - started, "python": platform.python_version(),
            "repeat": args.repeat, "heavy_repeat": args.heavy_repeat, "partial": partial,
            "results": [{**r.to_dict(), "measured": stamp} for r in results],
        }  # fmt: skip
        atomic_write_json(args.out, fresh if args.only is None else merge(previous, fresh, set(chosen)))

    for k, (label, fn) in enumerate(jobs, 1):
        print(f"[{k}/{len(jobs)}] {label} …", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        out = fn()
        done = out if isinstance(out, list) else [out]
        results += done
        print(table(done).split("\n", 1)[1], file=sys.stderr)  # the rows as they come, without the header
        print(f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        save(partial=True)
    print(table(results))
    missed = [f"{r.benchmark} [{r.setup}]: {t.label}" for r in results for t in r.targets if not t.met]
    print(f"{len(missed)} target(s) missed" + (": " + "; ".join(missed) if missed else ""))
    save(partial=False)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
