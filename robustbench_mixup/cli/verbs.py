"""One handler per subcommand: build the settings from the parsed arguments, call the stage, print."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from robustbench_mixup.cli.text import as_json, attack_table, diagnostics_table, print_claims, print_headline
from robustbench_mixup.settings.config import (
    METHODS,
    PROG,
    AttackConfig,
    ProbeConfig,
    TrainConfig,
    attack_named,
    default_run_name,
)
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.settings.sweeps import Job, SweepConfig  # fmt: skip


def _param_dest(method: str) -> str:
    return f"param_{method.replace('-', '_')}"


def method_params(args: argparse.Namespace) -> dict[str, float]:
    """`train`'s parsed method parameters: method -> α (or factor), for `TrainConfig.with_params`."""
    return {name: getattr(args, _param_dest(name)) for name, info in METHODS.items() if info.param is not None}


def _cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from robustbench_mixup.stages.progress import EpochProgress
    from robustbench_mixup.stages.train import record_group, train_run

    cfg = TrainConfig(
        dataset=args.dataset, model=args.model, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, dropout=args.dropout, width=args.width,
        methods=tuple(args.methods), train_n=args.train_n,
    ).with_params(method_params(args)).validate()  # fmt: skip
    plan = [(cfg, default_run_name(cfg) if args.run is None else args.run)]  # '' is refused as a name, not defaulted
    group = None
    if args.seeds is not None:
        from robustbench_mixup.cli.pipeline import check_group

        if "--seed" in argv or any(a.startswith("--seed=") for a in argv):
            raise UsageError("give either --seed or --seeds, not both")
        group = default_run_name(cfg, seeded=False) if args.run is None else args.run
        runs = check_group(Layout(args.out), group, args.seeds)
        plan = [(dataclasses.replace(cfg, seed=s).validate(), r) for s, r in zip(args.seeds, runs, strict=True)]
    for i, (one, run) in enumerate(plan):
        if group is not None and i == 0:
            record_group(cfg, group, [r for _, r in plan], out=args.out, data_root=args.data_root,
                         download=args.download)  # fmt: skip
        with EpochProgress(total=one.epochs * len(one.members), desc=f"train {run}") as progress:
            result = train_run(one, run=run, out=args.out, device=args.device, resume=args.resume,
                               data_root=args.data_root, download=args.download, argv=[PROG, *argv],
                               on_epoch=progress.update, on_start=progress.start)  # fmt: skip
        methods = ", ".join(one.describe(m) for m in one.methods)
        print(f"run {run}: {one.dataset}, {one.model}, {one.epochs} epochs, {methods}, seed {one.seed}")
        print(f"{'model':<16} {'test acc':>9} {'train loss':>11} {'images/s':>9}")
        for member, m in result.final.items():
            print(f"{member:<16} {m['test_acc']:>9.2%} {m['train_loss']:>11.4f} {m['images_per_s']:>9,.0f}")
        print(f"checkpoints: {Layout(result.out).run_dir(run)}")
    if group is not None:
        print(f"group {group}: runs {', '.join(r for _, r in plan)}; pooled report: robust-eval report --run {group}")
    return 0


def _cmd_attack(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from robustbench_mixup.stages.attack import evaluate_run
    from robustbench_mixup.stages.progress import Progress

    cfg = AttackConfig(
        attack=attack_named(args.attack, getattr(args, "loss", "ce")), eps=tuple(args.eps),
        steps=getattr(args, "steps", None), step_size=getattr(args, "step_size", None), mode=args.mode,
        backend=args.backend, n=args.n, batch_size=args.batch_size, restarts=getattr(args, "restarts", 1),
        precision=getattr(args, "precision", "fp32"), compile=getattr(args, "compile", False),
        early_stop=getattr(args, "early_stop", False),
    ).validate()  # fmt: skip
    with Progress(args.attack, "images") as bar:
        ev = evaluate_run(cfg, out=args.out, run=args.run, source=args.source, device=args.device,
                          data_root=args.data_root, progress=bar)  # fmt: skip
    if args.json:
        for model, clean in ev.clean.items():
            source = {"source": ev.source} if cfg.mode != "white" else {}  # the white box has no other source
            record = {
                "run": ev.run, "attack": cfg.attack, "backend": cfg.backend, **source, "model": model,
                "clean_top1": clean["top1"], "clean_top5": clean["top5"],
                "results": [r.as_dict() for r in ev.rows if r.model == model],
                "flags": [f for f in ev.flags if f["model"] == model],
                "indicators": [i.as_dict() for i in ev.indicators if i.model == model],
            }  # fmt: skip
            print(as_json(record))
        return 0
    print(attack_table(ev))
    return 0


def _cmd_import(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from robustbench_mixup.learning.zoo import FACTORIES_ENV, is_factory
    from robustbench_mixup.settings.imported import ImportConfig
    from robustbench_mixup.stages.import_run import import_run

    if args.source is not None and args.source[0] != "surrogate":
        raise UsageError(f"--source takes surrogate=PATH, got {args.source[0]}=…")
    cfg = ImportConfig(
        dataset=args.dataset, arch=args.arch, members=tuple(args.member),
        source=None if args.source is None else args.source[1],
        mean=None if args.mean is None else tuple(args.mean), std=None if args.std is None else tuple(args.std),
        normalized=args.normalized, force=args.force,
    ).validate()  # fmt: skip
    result = import_run(cfg, run=args.run, out=args.out, device=args.device, data_root=args.data_root,
                        download=args.download, argv=[PROG, *argv])  # fmt: skip
    print(f"run {result.run}: {cfg.dataset}, {cfg.arch}, imported {', '.join(result.checks)}")
    print(f"{'model':<16} {'clean acc':>9} {'95% interval':>17}  outputs")
    for member, c in result.checks.items():
        note = "probabilities: attacks on them are masked" if c["probabilities"] else "logits"
        note += "; near chance (kept: --force)" if c["near_chance"] else ""
        interval = f"[{100 * c['clean_acc_lo']:.2f}, {100 * c['clean_acc_hi']:.2f}]"
        print(f"{member:<16} {c['clean_acc']:>9.2%} {interval:>17}  {note}")
    white = "" if cfg.source is not None else " --mode white"  # no black-box source imported
    print(f"checkpoints: {Layout(result.out).run_dir(result.run)}")
    print(f"next: robust-eval pgd --run {result.run} --eps ...{white}")
    if is_factory(cfg.arch):
        print(f"note: every later command that loads these models imports {cfg.arch} again, only when you name it: "
              f"export {FACTORIES_ENV}={cfg.arch}")  # fmt: skip
    return 0


def _cmd_probe(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from robustbench_mixup.stages.probe import probe_run, summary
    from robustbench_mixup.stages.progress import Progress
    from robustbench_mixup.verdicts.tables import table_lambdas

    cfg = ProbeConfig(pairs=args.pairs, lambdas=args.lambdas, same_class=args.same_class, split=args.split).validate()
    with Progress("probe", "pairs") as bar:
        result = probe_run(cfg, out=args.out, run=args.run, device=args.device, data_root=args.data_root,
                           progress=bar)  # fmt: skip
    from robustbench_mixup.report.figures import draw_probe

    figure = draw_probe(Layout(args.out), result)
    if args.json:
        print(as_json({**summary(result), "figure": str(figure)}))
        return 0
    kind = "of different classes" if cfg.same_class == "exclude" else "(same-class pairs allowed)"
    print(f"probe of run {result.run}: {cfg.pairs} {cfg.split} pairs {kind}, drawn from seed {result.seed}")
    models = list(result.curves)
    width = max(10, *(len(m) for m in models))
    shown = table_lambdas(result.lambdas)
    print(f"{'% miss, ‖∇‖':<{width}}" + "".join(f" {f'λ {result.lambdas[t]:.2f}':>15}" for t in shown))
    for model in models:
        curve = result.curves[model]
        print(f"{model:<{width}}" + "".join(f" {curve['miss_rate'][t]:>7.2%} {curve['grad_norm'][t]:>7.3g}"
                                            for t in shown))  # fmt: skip
    print(f"all {cfg.lambdas} λ with 95% intervals: reports/results.sqlite (table probe_results) or --json")
    if cfg.same_class == "exclude":
        print("pairs are of different classes; --same-class include allows pairs of one class")
    print(f"figure: {figure}")
    return 0


def _cmd_diagnose(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from robustbench_mixup.settings.config import DiagnoseConfig
    from robustbench_mixup.stages.diagnose import diagnose_run
    from robustbench_mixup.stages.progress import Progress

    cfg = DiagnoseConfig(eps=None if args.eps is None else tuple(args.eps), n=args.n).validate()
    with Progress("diagnose", "images") as bar:
        result = diagnose_run(cfg, out=args.out, run=args.run, device=args.device, data_root=args.data_root,
                              progress=bar)  # fmt: skip
    if args.json:
        print(as_json({"run": result.run, "n": result.n, "seed": result.seed, "eps": list(result.eps),
                     "models": result.rows}))  # fmt: skip
        return 0
    print(f"diagnostics of run {result.run} on {result.n} test examples (random sign noise from seed {result.seed})")
    print(diagnostics_table(result.rows, result.eps))
    print("ECE: expected calibration error, 15 bins; margin: true-class logit minus the best other; ‖∇‖: the input "
          "gradient of each example's loss (=0: exactly zero, no sign to follow). Tiny gradients at confident points "
          "make FGSM optimistic: compare it with PGD and APGD-DLR.")  # fmt: skip
    return 0


def _cmd_sweep_robust(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from robustbench_mixup.settings.sweeps import RobustSweepConfig
    from robustbench_mixup.stages.progress import Progress
    from robustbench_mixup.stages.sweep_robust import run_robust_sweep

    cfg = RobustSweepConfig(
        dataset=args.dataset, model=args.model, methods=tuple(args.methods), alpha=tuple(args.alpha),
        epochs=tuple(args.epochs), seeds=tuple(args.seeds), attacks=tuple(args.attack), eps=tuple(args.eps),
        steps=args.steps, n=args.n, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        width=args.width, train_n=args.train_n,
    ).validate()  # fmt: skip
    total = len(cfg.cells())
    with Progress(f"sweep {args.name}", "epochs") as bar:

        def report(result: dict) -> None:
            c = result["cell"]
            bar.log(f"done α {c['alpha']:g}, {c['epochs']} epochs, seed {c['seed']} ({total} cells in the grid)")

        result = run_robust_sweep(cfg, name=args.name, out=args.out, executor=args.executor, jobs=args.jobs,
                                  address=args.address, device=args.device, data_root=args.data_root,
                                  on_cell=report, progress=bar)  # fmt: skip
    print(f"sweep {args.name}: {cfg.dataset}, {cfg.model}, method − ERM pooled over seeds {list(cfg.seeds)}, "
          "paired on the same test examples, Holm over every cell")  # fmt: skip
    from robustbench_mixup.report.pages import build_robust_sweep

    path, sentences = build_robust_sweep(args.out, result.name)
    for line in sentences:
        print(f"  {line}")
    print(f"report: {path.resolve().as_uri()}")
    return 0


def _cmd_sweep_corrupt(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from robustbench_mixup.stages.progress import Progress
    from robustbench_mixup.stages.sweep_corrupt import run_sweep
    from robustbench_mixup.verdicts.tables import table2

    cfg = SweepConfig(
        dataset=args.dataset, model=args.model, noise=tuple(args.noise), alpha=tuple(args.alpha),
        dropout=tuple(args.dropout), epochs=args.epochs, seeds=tuple(args.seeds), batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, width=args.width,
        methods=tuple(m for m in args.methods if m != "erm"), smoothing=tuple(args.smoothing), train_n=args.train_n,
    ).validate()  # fmt: skip
    total = len(cfg.jobs())
    with Progress(f"sweep {args.name}", "epochs") as bar:

        def report(result: dict) -> None:
            last = result["history"][-1]
            corrupted = "—" if last["train_corrupted_err"] is None else f"{last['train_corrupted_err']:.2%}"
            bar.log(f"done {Job(**result['job']).describe()}: test err {last['test_err']:.2%}, "
                    f"corrupted-label train err {corrupted} ({total} jobs in the grid)")  # fmt: skip

        result = run_sweep(cfg, name=args.name, out=args.out, executor=args.executor, jobs=args.jobs,
                           address=args.address, device=args.device, data_root=args.data_root,
                           on_job=report, progress=bar)  # fmt: skip
    what = f"{cfg.dataset}, {cfg.model}, {cfg.epochs} epochs, seeds {list(cfg.seeds)}"
    spread = "mean ± std over seeds" if len(cfg.seeds) > 1 else "1 seed: no spread"
    print(f"sweep {args.name}: {what} (error %, {spread})")
    print(
        f"{'noise':>5}  {'method':<34} {'test best':>12} {'test last':>12} {'train real':>12} {'train corrupted':>15}"
    )

    for row in table2(result.jobs):

        def cell(v: tuple[float, float] | None, width: int, seeds: int = row["seeds"]) -> str:
            if v is None:
                return f"{'—':>{width}}"
            return f"{f'{v[0]:.2f} ± {v[1]:.2f}' if seeds > 1 else f'{v[0]:.2f}':>{width}}"

        print(
            f"{row['noise']:>5.0%}  {row['method']:<34} {cell(row['best_test_err'], 12)}"
            f" {cell(row['last_test_err'], 12)} {cell(row['train_real_err'], 12)}"
            f" {cell(row['train_corrupted_err'], 15)}"
        )
    print("train corrupted: error on the corrupted examples against their corrupted labels (near 0 = memorized)")
    from robustbench_mixup.report.figures import draw_sweep

    figure = draw_sweep(Layout(args.out), result)
    if figure is not None:
        print(f"curves: {figure}")
    return 0


def _cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from robustbench_mixup.report.pages import render, render_comparison

    if args.compare is not None:
        path, found = render_comparison(args.out, args.compare)
    else:
        path, _, found = render(out=args.out, run=args.run)
    print_headline(found)
    print(f"report: {path.resolve().as_uri()}")
    return 0


def _cmd_export(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from robustbench_mixup.report.export import export

    print(export(args.out, args.run, args.format, args.output))
    return 0


def _cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from robustbench_mixup.cli.pipeline import run_group, run_name, run_pipeline
    from robustbench_mixup.settings.presets import preset

    p = preset(args.preset)
    if args.train_n is not None:
        p = dataclasses.replace(p, train_n=None if args.train_n == "all" else args.train_n, subset_on_gpu=True)
    seeds = args.seeds if args.seeds is not None else p.seeds
    where = {"out": args.out, "run": args.run, "device": args.device, "data_root": args.data_root,
             "download": args.download, "argv": [PROG, *argv], "sweep_workers": args.jobs}  # fmt: skip
    # The console prints the verdicts the report stage judged: the same objects, judged once.
    if seeds is not None:
        group, runs, (path, verdicts, headline) = run_group(p, seeds, **where)
        print(f"group {group} (runs {', '.join(runs)}): the paper's claims, paired, pooled over the seeds")
        print_claims(verdicts.claims)
        print("does the FGSM gain survive a strong attack? (per seed, paired on the same examples)")
        for run, strong in verdicts.strong.items():
            for v in strong:
                print(f"  {run}, {v.method}, {v.mode} box: {v.sentence}")
    else:
        path, verdicts, headline = run_pipeline(p, **where)
        print(f"run {run_name(p, args.run)}: the paper's claims, paired on the same examples (rule and figures in "
              "the report)")  # fmt: skip
        print_claims(verdicts.claims)
        print("does the FGSM gain survive a strong attack? (paired, on the same examples)")
        for v in verdicts.strong[verdicts.name]:
            print(f"  {v.method}, {v.mode} box: {v.sentence}")
            for c in v.caveats:
                print(f"    caveat: {c}")
    print_headline(headline)
    print(f"report: {path.resolve().as_uri()}")
    return 0
