"""The settings' identities: an attack's setting at one ε, and a method's parameter, each reached one way."""

import pytest

from robustbench_mixup.attacks.methods import make_attack
from robustbench_mixup.settings.config import ATTACKS, METHODS, AttackConfig, AttackSetting, TrainConfig
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.sweeps import RobustSweepConfig, SweepConfig
from robustbench_mixup.stages.attack import build_attack


def test_a_stored_row_and_the_attack_that_stored_it_have_one_setting():
    """What the database writes for an attack (its columns) reads back as the attack object's own setting, the
    seed of the random starts included; rows stored before restarts, seeds and precision read as the defaults."""
    cfg = AttackConfig("pgd", (0.05,), steps=7, restarts=2).validate()
    attack = build_attack(cfg, seed=3)
    row = {"steps": 7, "step_size": 2.5 * 0.05 / 7, "restarts": 2, "seed": 3, "precision": "fp32"}
    assert AttackSetting.of(row) == attack.setting(0.05) == AttackSetting(7, 2.5 * 0.05 / 7, 2, 3, "fp32")
    assert attack.setting(0.05) != build_attack(cfg, seed=4).setting(0.05)  # another seed: another evaluation
    assert attack.setting(0.05) != attack.setting(0.1)  # the step size follows ε
    old = {"steps": 10, "step_size": 0.01}
    assert AttackSetting.of(old) == make_attack("ifgsm", steps=10).setting(0.1)
    for name in ATTACKS:  # every attack object has a setting of the row's shape
        s = make_attack(name).setting(0.1)
        assert s == AttackSetting.of(s._asdict())


def test_a_methods_parameter_is_set_and_read_through_one_mapping():
    cfg = TrainConfig(methods=("erm", "cutmix", "label-smoothing")).with_params({"cutmix": 0.5, "label-smoothing": 0.2})
    assert (cfg.cutmix_alpha, cfg.smoothing) == (0.5, 0.2)
    assert {m: cfg.param(m) for m in ("erm", "cutmix", "label-smoothing")} == {"erm": 0.0, "cutmix": 0.5,
                                                                             "label-smoothing": 0.2}  # fmt: skip
    with pytest.raises(UsageError, match="erm takes no parameter"):
        cfg.with_params({"erm": 1.0})
    d = cfg.to_dict()  # a method's parameter is recorded when it is trained; mixup's α always, as it always was
    assert d["cutmix_alpha"] == 0.5 and d["smoothing"] == 0.2 and d["alpha"] == 1.0
    assert "manifold_alpha" not in d
    assert [m for m, info in METHODS.items() if info.param is not None and not info.beta] == ["label-smoothing"]
    assert [m for m, info in METHODS.items() if info.recorded] == ["mixup"]


def test_the_sweeps_set_each_methods_parameter_through_the_same_mapping():
    robust = RobustSweepConfig(dataset="digits", model="mlp", methods=tuple(METHODS), alpha=(0.5,), epochs=(1,),
                               seeds=(0,), attacks=("fgsm",), eps=(0.1,))  # fmt: skip
    cell = robust.cell_config(robust.cells()[0])
    beta = [m for m, info in METHODS.items() if info.param is not None and info.beta]
    assert {m: cell.param(m) for m in beta} == dict.fromkeys(beta, 0.5)
    assert cell.param("label-smoothing") == TrainConfig().param("label-smoothing")  # its factor is not an α
    sweep = SweepConfig(dataset="digits", model="mlp", noise=(0.5,), alpha=(0.0, 4.0), epochs=1,
                        methods=("cutmix",))  # fmt: skip
    jobs = {job.alpha: sweep.job_config(job) for job in sweep.jobs()}
    assert jobs[4.0].methods == ("erm", "cutmix") and jobs[4.0].param("cutmix") == 4.0
    assert jobs[0.0].param("mixup") == 0.0  # α = 0 is ERM


def test_what_the_database_stores_of_an_evaluation_reads_back_as_its_attacks_setting(tmp_path):
    """The columns `record_attack` writes, read back by `AttackSetting.of`, are the attack's own setting: the run's
    seed (of PGD's random starts) included, in the field order of the identity."""
    from robustbench_mixup.settings.layout import Layout
    from robustbench_mixup.stages.attack import evaluate_run
    from robustbench_mixup.stages.train import train_run
    from robustbench_mixup.store.database import ResultsDB

    train_run(TrainConfig(dataset="digits", model="mlp", epochs=1, batch_size=64, seed=3), run="r", out=tmp_path,
              device="cpu", members=("erm", "mixup"))  # fmt: skip
    cfg = AttackConfig("pgd", (0.05, 0.1), steps=2, restarts=2, mode="white").validate()
    evaluate_run(cfg, out=tmp_path, run="r", device="cpu")
    with ResultsDB(Layout(tmp_path).database) as db:
        rows = db.attack_rows("r", attack="pgd")
    assert len(rows) == 4 and {r["seed"] for r in rows} == {3}
    for r in rows:
        assert AttackSetting.of(r) == build_attack(cfg, seed=3).setting(r["eps"])
