import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch
from helpers import assert_one_line_error, run_cli

from robustbench_mixup.learning import checkpoints
from robustbench_mixup.learning.data import load_dataset
from robustbench_mixup.settings.sweeps import Job, SweepConfig
from robustbench_mixup.stages.sweep_corrupt import job_labels, run_sweep
from robustbench_mixup.verdicts.tables import table2

TINY = ["--dataset", "digits", "--model", "mlp", "--epochs", "3", "--device", "cpu", "--batch-size", "64"]


def test_one_corrupted_set_per_noise_and_seed_shared_by_every_method():
    data = load_dataset("digits")
    base = job_labels(data, Job(0.5, 0.0, 0.0, 0))
    for alpha, dropout in ((8.0, 0.0), (1.0, 0.5), (0.0, 0.7)):
        other = job_labels(data, Job(0.5, alpha, dropout, 0))
        assert torch.equal(base[0], other[0]) and torch.equal(base[1], other[1])
    assert int(base[1].sum()) == round(0.5 * len(data.train_labels))
    assert not torch.equal(base[1], job_labels(data, Job(0.5, 0.0, 0.0, 1))[1])  # another seed, another set
    assert not torch.equal(base[1], job_labels(data, Job(0.2, 0.0, 0.0, 0))[1])


def test_table2_output_of_a_tiny_sweep(capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "sweep", "corrupt", *TINY, "--noise", "0.2", "0.8", "--alpha", "0", "2", "--dropout", "0", "0.5",
        "--seeds", "0", "1", "--name", "tiny", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "sweep tiny: digits, mlp, 3 epochs, seeds [0, 1] (error %, mean ± std over seeds)"
    assert lines[1].split()[:2] == ["noise", "method"]
    methods = [ln[7:41].strip() for ln in lines[2:10]]
    assert methods == ["ERM", "ERM + dropout (p=0.5)", "mixup (α=2)", "mixup + dropout (α=2, p=0.5)"] * 2
    assert [ln.split()[0] for ln in lines[2:10]] == ["20%"] * 4 + ["80%"] * 4
    assert all(ln.count("±") == 4 for ln in lines[2:10])
    assert (tmp_path / "reports" / "sweeps" / "tiny" / "curves.png").stat().st_size > 10_000
    with sqlite3.connect(tmp_path / "reports" / "results.sqlite") as con:
        jobs = con.execute("SELECT count(*), sum(status='done'), max(starts) FROM sweep_jobs").fetchone()
        epochs = con.execute("SELECT count(*) FROM sweep_epochs").fetchone()[0]
        row = con.execute(
            "SELECT best_test_err, last_test_err FROM sweep_jobs WHERE key='noise0.8-alpha0-dropout0-seed1'"
        ).fetchone()
        history = con.execute(
            "SELECT test_err FROM sweep_epochs WHERE key='noise0.8-alpha0-dropout0-seed1' ORDER BY epoch"
        ).fetchall()
    assert jobs == (16, 16, 1) and epochs == 16 * 3
    assert row == (min(h[0] for h in history), history[-1][0])


def test_table2_means_and_stds_over_seeds():
    jobs = [
        {"noise": 0.5, "alpha": 0.0, "dropout": 0.0, "seed": s, "method": "ERM", "best_test_err": b,
         "last_test_err": b, "train_real_err": 0.0, "train_corrupted_err": None}
        for s, b in ((0, 0.10), (1, 0.20))
    ]  # fmt: skip
    (row,) = table2(jobs)
    assert row["best_test_err"][0] == pytest.approx(15.0) and row["best_test_err"][1] == pytest.approx(7.0710678)
    assert row["train_corrupted_err"] is None and row["seeds"] == 2


def test_rerunning_a_finished_sweep_trains_nothing(tmp_path):
    cfg = SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0,), epochs=2, batch_size=64)
    run_sweep(cfg, name="s", out=tmp_path, device="cpu")
    seen = []
    result = run_sweep(cfg, name="s", out=tmp_path, device="cpu", on_job=seen.append)
    assert seen == [] and len(result.jobs) == 1


@pytest.mark.slow
def test_kill_9_then_rerun_trains_no_finished_job_twice_and_equals_uninterrupted(tmp_path):
    grid = ["--noise", "0.5", "--alpha", "0", "4", "--seeds", "0", "1", "--name", "k"]
    args = ["--dataset", "mnist-5k", "--model", "mlp", "--epochs", "6", "--device", "cpu", *grid]
    cmd = [sys.executable, "-m", "robustbench_mixup", "sweep", "corrupt", *args]
    subprocess.run([*cmd, "--out", str(tmp_path / "full")], check=True, capture_output=True)

    cut = tmp_path / "cut"
    proc = subprocess.Popen([*cmd, "--out", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = cut / "reports" / "results.sqlite"
    deadline, done = time.monotonic() + 180, 0
    while done < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as con:
                    done = con.execute("SELECT count(*) FROM sweep_jobs WHERE status='done'").fetchone()[0]
            except sqlite3.OperationalError:  # the schema is still being created
                pass
    time.sleep(0.3)  # let the next job get some epochs in
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckdir = cut / "checkpoints" / "sweeps" / "k"
    with sqlite3.connect(db) as con:
        finished = [r[0] for r in con.execute("SELECT key FROM sweep_jobs WHERE status='done'")]
    assert 1 <= len(finished) < 4, "the kill must land mid-sweep for this test to mean anything"
    before = {k: (ckdir / f"{k}.safetensors").read_bytes() for k in finished}

    subprocess.run([*cmd, "--out", str(cut)], check=True, capture_output=True)
    with sqlite3.connect(db) as con:
        starts = dict(con.execute("SELECT key, starts FROM sweep_jobs").fetchall())
        cut_rows = con.execute("SELECT * FROM sweep_epochs ORDER BY key, epoch").fetchall()
    assert all(starts[k] == 1 for k in finished)  # finished jobs were never handed out again
    assert all((ckdir / f"{k}.safetensors").read_bytes() == before[k] for k in finished)
    with sqlite3.connect(tmp_path / "full" / "reports" / "results.sqlite") as con:
        full_rows = con.execute("SELECT * FROM sweep_epochs ORDER BY key, epoch").fetchall()
    assert cut_rows == full_rows  # the same numbers, bit for bit
    for key in starts:
        a, _ = checkpoints.read(tmp_path / "full" / "checkpoints" / "sweeps" / "k" / f"{key}.safetensors")
        b, _ = checkpoints.read(ckdir / f"{key}.safetensors")
        assert all(torch.equal(a[t], b[t]) for t in a)


def _same_results(a_jobs, b_jobs):
    key = lambda j: j["key"]  # noqa: E731
    for a, b in zip(sorted(a_jobs, key=key), sorted(b_jobs, key=key), strict=True):
        assert len(a["history"]) == len(b["history"]) > 0
        for ha, hb in zip(a["history"], b["history"], strict=True):
            # Workers get a share of the cores (Ray: one thread each), so float sums run in another
            # order: the mean loss may move in its 7th digit; every error rate (a count) must not.
            assert ha.pop("train_loss") == pytest.approx(hb.pop("train_loss"), rel=1e-5)
            assert ha == hb


@pytest.mark.slow
def test_worker_processes_give_the_results_of_one_process(tmp_path):
    cfg = SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0, 2.0), epochs=2, batch_size=64)
    parallel = run_sweep(cfg, name="p", out=tmp_path / "p", jobs=2, device="cpu")
    serial = run_sweep(cfg, name="p", out=tmp_path / "s", jobs=1, device="cpu")
    _same_results(parallel.jobs, serial.jobs)


@pytest.mark.slow
def test_a_tiny_sweep_through_a_local_ray_instance(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0, 2.0), epochs=2, batch_size=64)
        result = run_sweep(cfg, name="r", out=tmp_path / "ray", executor="ray", device="cpu")
    finally:
        ray.shutdown()
    local = run_sweep(cfg, name="r", out=tmp_path / "local", device="cpu")
    _same_results(result.jobs, local.jobs)


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--noise", "1.5", "--alpha", "0"], ["--noise values must lie in [0, 1]"]),
        (["--noise", "0.5", "--alpha", "-1"], ["--alpha must be ≥ 0"]),
        (["--noise", "0.5", "--alpha", "0", "--dropout", "1"], ["--dropout must be in [0, 1)"]),
        (["--noise", "--alpha", "0"], ["--noise", "expected at least one argument"]),
        (
            ["--noise", "0.5", "--alpha", "0", "--executor", "ray", "--address", "127.0.0.1:9"],
            ["cannot reach a Ray cluster"],
        ),
        (
            ["--noise", "0.5", "--alpha", "0", "--executor", "ray", "--address", "nonsense"],
            ["--address must look like"],
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, argv, needles):
    out = tmp_path / "o"
    started = time.monotonic()
    code, _, err = run_cli(capsys, "sweep", "corrupt", *TINY, *argv, "--name", "b", "--out", str(out))
    assert_one_line_error(code, err, *needles)
    assert not out.exists() and time.monotonic() - started < 10


def test_a_name_reused_with_other_settings(capsys, tmp_path):
    base = ["sweep", "corrupt", *TINY, "--noise", "0.5", "--name", "n", "--out", str(tmp_path)]
    assert run_cli(capsys, *base, "--alpha", "0")[0] == 0
    code, _, err = run_cli(capsys, *base, "--alpha", "0", "8")
    assert_one_line_error(code, err, "sweep 'n' already exists", "other settings")


def test_sweep_help_has_examples(capsys):
    code, out, _ = run_cli(capsys, "sweep", "corrupt", "--help")
    assert code == 0 and "robust-eval sweep corrupt --dataset mnist-5k" in out


def test_a_job_stores_which_corrupted_labels_it_memorized_and_old_jobs_are_read_back(tmp_path, capsys):
    """Per corrupted example, whether the last epoch predicts its corrupted label: the mean agrees with the stored
    error, and a job finished before these were kept is read back from its checkpoint, not retrained."""
    from robustbench_mixup.settings.layout import Layout
    from robustbench_mixup.store.database import ResultsDB

    argv = ("sweep", "corrupt", "--dataset", "digits", "--model", "mlp", "--noise", "0.5", "--alpha", "0", "--epochs",
            "1", "--batch-size", "64", "--name", "m", "--out", str(tmp_path), "--device", "cpu")  # fmt: skip
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "(error %, 1 seed: no spread)" in stdout and "±" not in stdout.split("\n", 2)[2]
    layout = Layout(tmp_path)

    def job() -> dict:
        with ResultsDB(layout.database) as db:
            (j,) = db.sweep_jobs("m")
        return j

    first = job()
    n_train = len(load_dataset("digits").train_labels)
    assert first["n_corrupted"] == round(0.5 * n_train) == len(first["corrupted_fit"])
    assert 1 - first["corrupted_fit"].mean() == pytest.approx(first["train_corrupted_err"])
    con = sqlite3.connect(layout.database)
    con.execute("UPDATE sweep_jobs SET corrupted_fit = NULL, n_corrupted = NULL")
    con.commit()
    con.close()
    checkpoint = layout.sweep_checkpoint("m", first["key"])
    before = checkpoint.read_bytes()
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert checkpoint.read_bytes() == before  # not retrained
    assert (job()["corrupted_fit"] == first["corrupted_fit"]).all()


def test_a_sweep_of_several_methods_pairs_each_with_erm_on_one_corrupted_set(tmp_path):
    from robustbench_mixup.store.database import ResultsDB
    from robustbench_mixup.verdicts.claims import RunResults, memorization_points

    cfg = SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0, 2.0), epochs=2, batch_size=64,
                      methods=("mixup", "cutmix", "label-smoothing"), smoothing=(0.2,))  # fmt: skip
    assert [j.key for j in cfg.jobs()] == ["noise0.5-alpha0-dropout0-seed0", "noise0.5-alpha2-dropout0-seed0",
                                           "noise0.5-cutmix2-dropout0-seed0",
                                           "noise0.5-label-smoothing0.2-dropout0-seed0"]  # fmt: skip
    assert cfg.job_config(cfg.jobs()[2]).to_dict()["cutmix_alpha"] == 2.0  # the method's own parameter
    assert cfg.job_config(cfg.jobs()[1]) == SweepConfig(**{**cfg.__dict__, "methods": ("mixup",)}).job_config(
        cfg.jobs()[1]
    )  # a mixup job is trained as it always was
    result = run_sweep(cfg, name="fam", out=tmp_path, device="cpu")
    assert [j["method"] for j in result.jobs] == ["ERM", "mixup (α=2)", "CutMix (α=2)", "label smoothing (s=0.2)"]
    with ResultsDB(tmp_path / "reports" / "results.sqlite") as db:
        jobs, stored = db.sweep_jobs("fam"), db.get_sweep("fam")["config"]
    results = RunResults(dataset="digits", model="mlp", sweep_config=stored, sweep_jobs=jobs)
    by_key = {j["key"]: j for j in jobs}
    for method, key in (("cutmix", "noise0.5-cutmix2-dropout0-seed0"),
                        ("label-smoothing", "noise0.5-label-smoothing0.2-dropout0-seed0")):  # fmt: skip
        measured = memorization_points(results, method)
        ((erm_err, method_err),) = measured.points[0.0]
        assert (erm_err == ~by_key["noise0.5-alpha0-dropout0-seed0"]["corrupted_fit"]).all()  # ERM's own bits
        assert (method_err == ~by_key[key]["corrupted_fit"]).all() and len(erm_err) == len(method_err)
    assert "no Manifold Mixup job" in memorization_points(results, "manifold-mixup")


def test_old_sweep_settings_read_as_they_were_and_a_bad_method_is_refused(tmp_path):
    old = SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0, 8.0), epochs=2)
    assert not {"methods", "smoothing", "width"} & set(old.to_dict())  # stored as before methods existed
    assert SweepConfig(**{**old.to_dict(), "noise": (0.5,), "alpha": (0.0, 8.0)}).jobs() == old.jobs()
    for bad in (("erm",), ("mixup", "mixup"), ("bogus",), ()):
        with pytest.raises(Exception, match="--methods"):
            SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0,), epochs=1, methods=bad).validate()
    with pytest.raises(Exception, match="--smoothing must be in"):
        SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0,), epochs=1,
                    methods=("label-smoothing",), smoothing=(1.5,)).validate()  # fmt: skip


def test_a_stored_job_of_an_unknown_method_is_refused_as_damage(tmp_path):
    from robustbench_mixup.settings.errors import UsageError
    from robustbench_mixup.store.database import ResultsDB

    history = [{"epoch": 1, "train_loss": 1.0, "test_err": 0.5, "train_real_err": 0.1, "train_corrupted_err": 0.2,
                "train_corrupted_true_err": 0.9}]  # fmt: skip
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.start_sweep("s", {}, [("k", {"noise": 0.5, "alpha": 2.0, "dropout": 0.0, "seed": 0, "mixing": "cutmix"})])
        db.record_sweep_job("s", "k", history)
        assert db.sweep_jobs("s")[0]["mixing"] == "cutmix"
        db.conn.execute("UPDATE sweep_jobs SET mixing='<b>bogus</b>'")
        with pytest.raises(UsageError, match=r"sweep_jobs\.mixing of 's' is '<b>bogus</b>', not a method"):
            db.sweep_jobs("s")


ROBUST = ["sweep", "robust", "--dataset", "digits", "--model", "mlp", "--methods", "erm", "mixup", "--alpha", "0.5",
          "2", "--epochs", "1", "--seeds", "0", "1", "--attack", "fgsm", "--eps", "0.05", "0.1", "--batch-size", "64",
          "--device", "cpu", "--name", "where"]  # fmt: skip


@pytest.mark.slow
def test_a_robustness_sweep_pools_each_cell_over_seeds_and_says_where_the_claim_holds(capsys, tmp_path):
    from robustbench_mixup.measures.stats import pooled_effect
    from robustbench_mixup.store.database import ResultsDB
    from robustbench_mixup.verdicts.sweep_effects import sweep_effects

    code, out, err = run_cli(capsys, *ROBUST, "--out", str(tmp_path))
    assert code == 0, err
    sentences = [ln for ln in out.splitlines() if ln.startswith("  After 1 epochs")]
    assert len(sentences) == 3  # clean, FGSM at 0.05 and at 0.1, for mixup
    assert all(re.search(r"(holds|flips|is undecided) at α = ", s) for s in sentences)
    report = tmp_path / "reports" / "sweeps" / "where" / "index.html"
    html = report.read_text()
    assert re.search(r'id="fig-effects" alt="[^"]+" src="data:image/png;base64,', html)
    with ResultsDB(tmp_path / "reports" / "results.sqlite") as db:
        rows = db.robust_rows("where")
    assert {(r["alpha"], r["seed"]) for r in rows} == {(0.5, 0), (0.5, 1), (2.0, 0), (2.0, 1)}
    effects = {(x.attack, x.eps, x.alpha): x for x in sweep_effects(rows)}
    assert len(effects) == 2 * 3 and html.count('<tr><td class="l">mixup</td>') == 6
    # each cell's effect: ERM and mixup of the same seed paired on the same test examples, then over the seeds
    for alpha in (0.5, 2.0):
        pairs = []
        for seed in (0, 1):
            cell = tmp_path / "checkpoints" / "sweeps" / "where" / f"alpha{alpha:g}-epochs1-seed{seed}"
            with ResultsDB(cell / "reports" / "results.sqlite") as db:
                at = {r["model"]: r["correct"] for r in db.attack_rows("cell", outcomes=True, eps=0.1)}
            pairs.append((~at["erm"], ~at["mixup"]))
        expected = pooled_effect(pairs, shared_units=True)
        assert effects[("fgsm", 0.1, alpha)].effect.diff == pytest.approx(expected.diff)
        assert effects[("fgsm", 0.1, alpha)].effect.lo == pytest.approx(expected.lo)
    capsys.readouterr()
    code, out, err = run_cli(capsys, *ROBUST, "--out", str(tmp_path))  # everything stored: nothing is retrained
    assert code == 0 and "done α" not in err, err
    code, _, err = run_cli(capsys, *ROBUST[:-1], "other", "--out", str(tmp_path), "--eps", "0.2")
    assert code == 0, err  # another name, another sweep
    code, _, err = run_cli(capsys, *ROBUST, "--out", str(tmp_path), "--seeds", "0")
    assert_one_line_error(code, err, "sweep 'where' already exists", "with other settings")
    with sqlite3.connect(tmp_path / "reports" / "results.sqlite") as con:
        con.execute("UPDATE robust_results SET correct = x'00' WHERE attack = 'fgsm'")  # a blob cut short
    code, _, err = run_cli(capsys, *ROBUST, "--out", str(tmp_path))
    assert_one_line_error(code, err, "robust_results.correct of 'where'")


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--alpha", "0"], ["--alpha values must be > 0"]),
        (["--methods", "mixup"], ["--methods must include erm"]),
        (["--eps", "2"], ["--eps values must lie in (0, 1]"]),
        (["--eps", "0"], ["clean accuracy is always judged"]),
        (["--steps", "3"], ["--steps applies to the iterative attacks"]),
        (["--methods", "erm", "mixupp"], ["unknown method 'mixupp'"]),
        (["--epochs", "0"], ["--epochs must be ≥ 1"]),
        (["--seeds", "1", "1"], ["--seeds lists a value more than once"]),
    ],
)
def test_robustness_sweep_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, extra, needles):
    code, _, err = run_cli(capsys, *ROBUST, *extra, "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "o").exists()


def test_a_sweep_cannot_take_the_name_of_the_other_kind(capsys, tmp_path):
    from robustbench_mixup.store.database import ResultsDB

    with ResultsDB(tmp_path / "reports" / "results.sqlite") as db:
        db.start_sweep("where", {"dataset": "digits"}, [])
        db.start_robust_sweep("there", {"dataset": "digits"}, [])
    code, _, err = run_cli(capsys, *ROBUST, "--out", str(tmp_path))
    assert_one_line_error(code, err, "sweep 'where' already exists", "as a memorization sweep")
    code, _, err = run_cli(capsys, "sweep", "corrupt", "--dataset", "digits", "--model", "mlp", "--noise", "0.5",
                           "--alpha", "0", "--epochs", "1", "--name", "there", "--out", str(tmp_path))  # fmt: skip
    assert_one_line_error(code, err, "sweep 'there' already exists", "as a robustness sweep")
