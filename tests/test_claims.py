"""The claims table and its selection rules, on hand-made rows shaped like the database's."""

from __future__ import annotations

import re

import pytest
import torch

from robustbench_mixup import claims, stats
from robustbench_mixup.claims import CLAIMS, ClaimSpec, RunResults, assess
from robustbench_mixup.config import ATTACKS
from robustbench_mixup.stats import wilson_interval

COMMANDS = {
    "train": "robust-eval train",
    "fgsm": "robust-eval fgsm --eps 0 0.1 --run r",
    "ifgsm": "robust-eval ifgsm --eps 0.1 --run r",
    "probe": "robust-eval probe --run r",
    "sweep": "robust-eval sweep corrupt --name r",
}


def attack_row(model, eps, top1, *, attack="fgsm", mode="white", backend="native", n=100, half=0.05):
    return {
        "run": "r", "model": model, "attack": attack, "mode": mode, "source": "erm" if mode == "black" else model,
        "eps": eps, "steps": 1, "step_size": eps, "backend": backend, "split": "test", "n": n,
        "top1": top1, "top1_lo": top1 - half, "top1_hi": top1 + half,
        "top5": 1.0, "top5_lo": 0.99, "top5_hi": 1.0, "clean_top1": 0.99,
    }  # fmt: skip


def probe_row(model, lam, miss, norm, *, pairs=100, split="train", same_class="exclude", seed=0):
    return {
        "model": model, "split": split, "same_class": same_class, "pairs": pairs, "seed": seed, "lam": lam,
        "miss_rate": miss, "miss_lo": miss - 0.01, "miss_hi": miss + 0.01,
        "grad_norm": norm, "norm_lo": norm - 0.01, "norm_hi": norm + 0.01,
    }  # fmt: skip


def job(noise, alpha, err, *, seed=0, dropout=0.0):
    return {"noise": noise, "alpha": alpha, "dropout": dropout, "seed": seed, "train_corrupted_err": err,
            "test_err": 0.2, "history": []}  # fmt: skip


def by_key(results: RunResults, commands=COMMANDS) -> dict[str, claims.Claim]:
    return {c.key: c for c in assess(results, commands=commands)}


# --- the table ----------------------------------------------------------------------------------------------


def test_every_claim_row_has_a_distinct_key_and_a_valid_direction_stage_and_unit():
    keys = [s.key for s in CLAIMS]
    assert len(keys) == len(set(keys)) == 7
    for spec in CLAIMS:
        assert spec.direction in claims.DIRECTIONS and spec.stage in claims.FILLED_BY
        assert spec.unit in ("%", "") and spec.claim and spec.paper and callable(spec.select)
    assert [s.unit for s in CLAIMS].count("") == 1  # only the gradient norm is not a proportion
    with pytest.raises(ValueError, match="stage"):
        ClaimSpec("k", "c", "p", "lower", "%", "eval", lambda r: (None, None, ""))
    with pytest.raises(ValueError, match="direction"):
        ClaimSpec("k", "c", "p", "sideways", "%", "train", lambda r: (None, None, ""))


def test_an_unmeasured_claim_carries_the_command_of_its_stage():
    got = assess(RunResults(), commands=COMMANDS)
    assert [c.key for c in got] == [s.key for s in CLAIMS]
    for spec, c in zip(CLAIMS, got, strict=True):
        assert c.verdict == "not measured" and c.erm is None and c.mixup is None
        assert c.command == COMMANDS[spec.stage] and c.unit == spec.unit
    assert by_key(RunResults(), commands={})["probe_miss_rate"].command == ""


# --- attacks ------------------------------------------------------------------------------------------------


def test_attack_claims_use_the_largest_eps():
    rows = [
        attack_row("erm", 0.0, 0.99), attack_row("mixup", 0.0, 0.99),
        attack_row("erm", 0.03, 0.50), attack_row("mixup", 0.03, 0.60),
        attack_row("erm", 0.1, 0.10), attack_row("mixup", 0.1, 0.40),
    ]  # fmt: skip
    erm, mix, where = claims.attack_error(RunResults(attack_rows=rows), attack="fgsm", mode="white")
    assert (erm.value, erm.lo, erm.hi) == pytest.approx((0.9, 0.85, 0.95))  # error: the accuracy interval flipped
    assert mix.value == pytest.approx(0.6) and where == "ε = 0.1, n = 100"
    c = by_key(RunResults(attack_rows=rows))
    assert c["fgsm_white"].verdict == "reproduced"  # error 60% [55, 65] entirely below 90% [85, 95]
    assert c["fgsm_black"].verdict == "not measured"  # another mode is another claim


def test_a_non_native_backend_row_is_ignored():
    rows = [
        attack_row("erm", 0.1, 0.10), attack_row("mixup", 0.1, 0.40),
        attack_row("erm", 0.1, 0.90, backend="torchattacks"), attack_row("mixup", 0.1, 0.05, backend="torchattacks"),
        attack_row("erm", 0.3, 0.00, backend="foolbox"), attack_row("mixup", 0.3, 0.00, backend="foolbox"),
    ]  # fmt: skip
    erm, mix, where = claims.attack_error(RunResults(attack_rows=rows), attack="fgsm", mode="white")
    assert (erm.value, mix.value) == (pytest.approx(0.9), pytest.approx(0.6)) and where.startswith("ε = 0.1,")
    only_other = [r for r in rows if r["backend"] != "native"]
    assert claims.attack_error(RunResults(attack_rows=only_other), attack="fgsm", mode="white") == (None, None, "")


def test_an_attack_claim_needs_both_models_at_its_eps():
    rows = [attack_row("erm", 0.1, 0.1), attack_row("mixup", 0.03, 0.4)]
    assert claims.attack_error(RunResults(attack_rows=rows), attack="fgsm", mode="white") == (None, None, "")


# --- probe --------------------------------------------------------------------------------------------------


def test_probe_reads_the_lambda_nearest_one_half():
    rows = [probe_row(m, lam, miss, 0.3) for m, miss in (("erm", 0.3), ("mixup", 0.1)) for lam in (0.0, 0.45, 0.7, 1.0)]
    rows += [probe_row(m, 0.45, 0.9, 0.3, pairs=50) for m in ("erm", "mixup")]  # fewer pairs: not read
    results = RunResults(probe_rows=rows)
    pairs, lam, at = claims.probe_setting(rows)
    assert (pairs, lam, set(at)) == (100, 0.45, {"erm", "mixup"})
    erm, mix, where = claims.probe_quantity(results, value="miss_rate", lo="miss_lo", hi="miss_hi")
    assert (erm.value, mix.value, where) == (0.3, 0.1, "λ = 0.45, 100 pairs")


def test_probe_prefers_the_train_split_with_same_class_pairs_excluded():
    rows = [
        probe_row("erm", 0.5, 0.40, 0.30, split="test"), probe_row("mixup", 0.5, 0.41, 0.31, split="test"),
        probe_row("erm", 0.5, 0.30, 0.20), probe_row("mixup", 0.5, 0.10, 0.05),
        probe_row("erm", 0.5, 0.50, 0.50, same_class="include"),
        probe_row("mixup", 0.5, 0.52, 0.51, same_class="include"),
    ]  # fmt: skip
    c = by_key(RunResults(probe_rows=rows))
    assert (c["probe_miss_rate"].erm.value, c["probe_miss_rate"].mixup.value) == (0.30, 0.10)
    assert (c["probe_grad_norm"].erm.value, c["probe_grad_norm"].mixup.value) == (0.20, 0.05)
    assert c["probe_grad_norm"].unit == "" and c["probe_miss_rate"].unit == "%"
    assert c["probe_miss_rate"].verdict == c["probe_grad_norm"].verdict == "reproduced"
    # without train/exclude rows, every row at the largest pair count is a candidate
    test_only = [r for r in rows if r["split"] == "test"]
    assert by_key(RunResults(probe_rows=test_only))["probe_miss_rate"].verdict == "inconclusive"


def test_probe_without_one_of_the_models_is_not_measured():
    results = RunResults(probe_rows=[probe_row("erm", 0.5, 0.3, 0.2)])
    assert by_key(results)["probe_miss_rate"].verdict == "not measured"


# --- memorization -------------------------------------------------------------------------------------------


def test_memorization_reads_the_noise_nearest_one_half():
    jobs = [job(0.2, 0.0, 0.01), job(0.2, 8.0, 0.99), job(0.6, 0.0, 0.05), job(0.6, 8.0, 0.70)]
    noise, alpha, erm, mix = claims.memorization_setting(jobs)
    assert (noise, alpha) == (0.6, 8.0) and [j["noise"] for j in erm + mix] == [0.6, 0.6]
    c = by_key(RunResults(sweep_jobs=jobs, n_train=1000))["memorization"]
    assert (c.erm.value, c.mixup.value) == (0.05, 0.70)
    assert c.where == "60% noise, mixup α = 8, 1 seed(s)" and c.verdict == "reproduced"


def test_memorization_compares_alpha_zero_with_the_largest_alpha_without_dropout():
    jobs = [
        job(0.5, 0.0, 0.02), job(0.5, 1.0, 0.30), job(0.5, 32.0, 0.80),
        job(0.5, 64.0, 0.99, dropout=0.3), job(0.5, 0.0, 0.95, dropout=0.5),
    ]  # fmt: skip
    noise, alpha, erm, mix = claims.memorization_setting(jobs)
    assert (noise, alpha) == (0.5, 32.0) and [j["train_corrupted_err"] for j in erm + mix] == [0.02, 0.80]
    erm_e, mix_e, where = claims.memorization(RunResults(sweep_jobs=jobs, n_train=1000))
    assert (erm_e.value, mix_e.value) == (0.02, 0.80) and "α = 32" in where
    assert claims.memorization_setting([job(0.5, 0.0, 0.1), job(0.5, 0.0, 0.2, seed=1)]) is None  # no mixup job
    assert claims.memorization(RunResults(sweep_jobs=jobs, n_train=None)) == (None, None, "")
    assert claims.memorization(RunResults(sweep_jobs=[{**jobs[0], "train_corrupted_err": None}], n_train=10)) == (
        None, None, "",
    )  # fmt: skip


def test_memorization_pools_the_seeds_in_one_wilson_interval():
    per_seed = ((0.1, 0.8), (0.2, 0.9), (0.3, 0.7))  # (ERM, mixup) error on corrupted labels, seeds 0, 1, 2
    jobs = [job(0.5, a, e, seed=s) for s, errs in enumerate(per_seed) for a, e in zip((0.0, 8.0), errs, strict=True)]
    erm, mix, where = claims.memorization(RunResults(sweep_jobs=jobs, n_train=200))
    pooled_n = 100 * 3  # 50% of 200 corrupted examples per seed, three seeds
    assert erm.value == pytest.approx(0.2) and mix.value == pytest.approx(0.8)
    assert (erm.lo, erm.hi) == pytest.approx(wilson_interval(round(0.2 * pooled_n), pooled_n))
    assert (mix.lo, mix.hi) == pytest.approx(wilson_interval(round(0.8 * pooled_n), pooled_n))
    assert (erm.lo, erm.hi) != pytest.approx(wilson_interval(20, 100))  # not one seed's interval
    assert where == "50% noise, mixup α = 8, 3 seed(s)"


# --- clean accuracy and verdicts ----------------------------------------------------------------------------


def test_clean_accuracy_has_a_wilson_interval_over_n_test():
    erm, mix, where = claims.clean_accuracy(RunResults(final_test_acc={"erm": 0.9, "mixup": 0.92}, n_test=500))
    assert (erm.lo, erm.hi) == pytest.approx(wilson_interval(450, 500)) and mix.value == 0.92
    assert where == "test split, n = 500"
    erm, mix, _ = claims.clean_accuracy(RunResults(final_test_acc={"erm": 0.9}, n_test=500))
    assert erm is not None and mix is None


@pytest.mark.parametrize(
    "erm_acc, mix_acc, expected",
    [
        (0.90, 0.80, "not reproduced"),  # mixup entirely below ERM: worse
        (0.90, 0.89, "reproduced"),  # overlapping: no worse
        (0.80, 0.90, "reproduced"),  # better
    ],
)
def test_clean_accuracy_verdict_follows_the_no_worse_rule(erm_acc, mix_acc, expected):
    c = by_key(RunResults(final_test_acc={"erm": erm_acc, "mixup": mix_acc}, n_test=1000))["clean_accuracy"]
    assert c.verdict == expected and c.command == COMMANDS["train"]


def test_verdicts_on_a_full_hand_made_run():
    results = RunResults(
        final_test_acc={"erm": 0.95, "mixup": 0.70},
        n_test=1000,
        attack_rows=[
            attack_row("erm", 0.1, 0.20), attack_row("mixup", 0.1, 0.60),  # white FGSM: mixup lower error
            attack_row("erm", 0.1, 0.60, mode="black"), attack_row("mixup", 0.1, 0.20, mode="black"),  # higher
            attack_row("erm", 0.1, 0.50, attack="ifgsm", mode="black"),
            attack_row("mixup", 0.1, 0.52, attack="ifgsm", mode="black"),  # overlapping
        ],
        probe_rows=[probe_row("erm", 0.5, 0.3, 0.1), probe_row("mixup", 0.5, 0.1, 0.3)],
        sweep_jobs=[job(0.5, 0.0, 0.01), job(0.5, 8.0, 0.9)],
        n_train=1000,
    )  # fmt: skip
    got = {k: c.verdict for k, c in by_key(results).items()}
    assert got == {
        "fgsm_white": "reproduced",
        "fgsm_black": "not reproduced",
        "ifgsm_black": "inconclusive",
        "probe_miss_rate": "reproduced",
        "probe_grad_norm": "not reproduced",
        "memorization": "reproduced",
        "clean_accuracy": "not reproduced",
    }


# --- does the FGSM gain survive a strong attack? ---------------------------------------------------------


def outcome_row(model, attack, eps, k, *, n=1000, mode="white", stored=True, steps=None, backend="native",
                source="surrogate", restarts=1, precision="fp32", created="2026-01-01", start=0):  # fmt: skip
    """A stored attack row on which `model` gets examples start, ..., start + k - 1 of `n` right (`stored`
    False: a row stored without its outcomes)."""
    correct = (torch.arange(n) >= start) & (torch.arange(n) < start + k)
    lo, hi = wilson_interval(k, n)
    info = ATTACKS[attack]
    steps = steps if steps is not None else info.default_steps
    return {
        "run": "r", "model": model, "attack": attack, "mode": mode, "source": model if mode == "white" else source,
        "eps": eps, "steps": steps, "step_size": eps / steps, "backend": backend, "split": "test", "n": n,
        "top1": k / n, "top1_lo": lo, "top1_hi": hi, "restarts": restarts, "seed": 0, "precision": precision,
        "created": created, "correct": correct if stored else None,
    }  # fmt: skip


def pair(attack, eps, erm, mixup, *, shift=0, **kw):
    """ERM right on the first `erm` examples, mixup on `mixup` examples starting at `shift` (discordance both ways)."""
    return [outcome_row("erm", attack, eps, erm, **kw), outcome_row("mixup", attack, eps, mixup, start=shift, **kw)]


def worst_rows(eps, erm, mixup, *, n=1000, shift=100, attacks=("apgd-ce", "fgsm", "pgd")):
    out = []
    for model, k, start in (("erm", erm, 0), ("mixup", mixup, shift)):
        lo, hi = wilson_interval(k, n)
        correct = (torch.arange(n) >= start) & (torch.arange(n) < start + k)
        out.append({"run": "r", "model": model, "eps": eps, "n": n, "attacks": list(attacks), "top1": k / n,
                    "top1_lo": lo, "top1_hi": hi, "correct": correct})  # fmt: skip
    return out


def strong(rows, worst=(), key="fgsm_white"):
    return {v.key: v for v in claims.strong_attack_verdicts(rows, worst)}[key]


def test_strong_verdicts_cover_both_fgsm_claims_in_order():
    got = claims.strong_attack_verdicts([])
    assert [(v.key, v.mode) for v in got] == [("fgsm_white", "white"), ("fgsm_black", "black")]
    assert claims.STRONG == ("pgd", "apgd-ce", "apgd-dlr")


def test_a_gain_that_survives_every_strong_attack():
    rows = pair("fgsm", 0.1, 500, 620) + pair("pgd", 0.1, 300, 380)
    v = strong(rows)
    assert v.verdict == "survives" and (v.eps, v.n, v.note, v.needs) == (0.1, 1000, "", ())
    assert re.fullmatch(
        r"mixup's FGSM gain of 12\.0 points shrinks to 8\.0 under PGD \(interval \[\d\.\d, \d+\.\d\] excludes 0: "
        r"survives\)", v.sentence,
    ), v.sentence  # fmt: skip
    (at,) = v.table
    assert at.fgsm.diff.diff == pytest.approx(0.12) and at.fgsm.diff.n01 == 120 and at.fgsm.diff.n10 == 0
    assert [g.attack for g in at.strong] == ["pgd"] and at.strong[0].outcome == "survives"
    assert at.strong[0].setting == "50 steps"


def test_the_most_severe_strong_attack_decides_vanishes():
    rows = pair("fgsm", 0.1, 500, 623) + pair("pgd", 0.1, 300, 380) + pair("apgd-ce", 0.1, 100, 104, shift=50)
    v = strong(rows)
    assert v.verdict == "vanishes"
    assert v.sentence.startswith("mixup's FGSM gain of 12.3 points shrinks to 0.4 under APGD-CE (interval [-")
    assert v.sentence.endswith("] includes 0: vanishes)")
    assert [g.outcome for g in v.table[0].strong] == ["survives", "vanishes"]


def test_a_gain_that_reverses():
    rows = pair("fgsm", 0.1, 500, 620) + pair("apgd-ce", 0.1, 100, 105, shift=50) + pair("apgd-dlr", 0.1, 100, 60)
    v = strong(rows)
    assert v.verdict == "reverses"
    assert v.sentence.startswith("mixup's FGSM gain of 12.0 points turns into a loss of 4.0 points under APGD-DLR")
    assert v.sentence.endswith("lies below 0: reverses)")


def test_grows_and_stays_wording():
    fgsm = claims.Gain("fgsm", "FGSM", 0.5, 0.6, stats.paired_difference(torch.arange(100) < 50,
                                                                         torch.arange(100) < 60))  # fmt: skip
    more = claims.Gain("pgd", "PGD", 0.2, 0.35, stats.paired_difference(torch.arange(100) < 20,
                                                                        torch.arange(100) < 35))  # fmt: skip
    same = claims.Gain("pgd", "PGD", 0.2, 0.3, stats.paired_difference(torch.arange(100) < 20,
                                                                       torch.arange(100) < 30))  # fmt: skip
    assert "gain of 10.0 points grows to 15.0 under PGD" in claims.describe(fgsm, more)
    assert "gain of 10.0 points stays at 10.0 under PGD" in claims.describe(fgsm, same)
    unpaired = claims.Gain("pgd", "PGD", 0.2, 0.3, None)
    assert unpaired.outcome == "not paired" and claims.describe(fgsm, unpaired).startswith("PGD: not paired: re-run")


@pytest.mark.parametrize("mixup, side", [(505, "includes 0"), (400, "lies below 0")])
def test_no_fgsm_gain_to_test(mixup, side):
    rows = pair("fgsm", 0.1, 500, mixup, shift=100) + pair("pgd", 0.1, 300, 200)
    v = strong(rows)
    assert v.verdict == "no FGSM gain to test" and side in v.sentence and v.needs == ()
    assert v.sentence.startswith(f"mixup − ERM under FGSM is {(mixup - 500) / 10:.1f} points, interval [")


def test_rows_without_outcomes_are_not_paired_and_say_what_to_rerun():
    rows = pair("fgsm", 0.05, 500, 620, stored=False) + pair("fgsm", 0.1, 500, 620, stored=False)
    rows += pair("pgd", 0.1, 300, 380, steps=20)
    v = strong(rows)
    assert v.verdict == "not paired: re-run" and "FGSM" in v.note
    (fgsm,) = v.needs
    assert (fgsm.attack, fgsm.eps, fgsm.n, fgsm.steps) == ("fgsm", (0.05, 0.1), 1000, None)
    rows = pair("fgsm", 0.1, 500, 620) + pair("pgd", 0.1, 300, 380, steps=20, stored=False)
    v = strong(rows)
    assert v.verdict == "not paired: re-run" and v.note == "stored without per-example outcomes: PGD"
    assert [(c.attack, c.eps, c.steps) for c in v.needs] == [("pgd", (0.1,), 20)]
    # one strong attack paired is enough to judge; the other is named in the note
    rows += pair("apgd-ce", 0.1, 100, 200)
    v = strong(rows)
    assert v.verdict == "survives" and "under APGD-CE" in v.sentence and v.note.endswith("PGD")


def test_nothing_to_compare():
    v = strong([])
    assert v.verdict == "no FGSM result" and v.needs[0].attack == "fgsm" and v.table == ()
    v = strong(pair("fgsm", 0.0, 900, 900) + pair("fgsm", 0.1, 500, 620) + pair("ifgsm", 0.1, 100, 200))
    assert v.verdict == "no strong attack run" and "PGD, APGD-CE, APGD-DLR" in v.sentence
    assert [(c.attack, c.eps, c.n) for c in v.needs] == [(a, (0.1,), 1000) for a in claims.STRONG]
    # a strong attack on other examples (n) or with another backend does not count
    rows = pair("fgsm", 0.1, 500, 620) + pair("pgd", 0.1, 150, 200, n=500)
    rows += pair("pgd", 0.1, 300, 380, backend="torchattacks")
    assert strong(rows).verdict == "no strong attack run"


def test_the_headline_falls_back_to_the_largest_common_eps_and_says_so():
    rows = pair("fgsm", 0.03, 700, 800) + pair("fgsm", 0.05, 600, 720) + pair("fgsm", 0.1, 500, 620)
    rows += pair("pgd", 0.03, 500, 600) + pair("apgd-ce", 0.05, 400, 401, shift=100)
    v = strong(rows)
    assert [g.eps for g in v.table] == [0.03, 0.05] and v.eps == 0.05 and v.verdict == "vanishes"
    assert v.note == "no strong attack at the FGSM claim's ε = 0.1: read at ε = 0.05, the largest ε where both ran"
    assert [g.label for g in v.table[0].strong] == ["PGD"] and [g.label for g in v.table[1].strong] == ["APGD-CE"]


def test_the_worst_case_joins_the_white_box_only_and_can_decide():
    rows = pair("fgsm", 0.1, 500, 620) + pair("pgd", 0.1, 300, 380) + pair("apgd-ce", 0.1, 250, 340)
    rows += pair("fgsm", 0.1, 400, 520, mode="black") + pair("pgd", 0.1, 350, 450, mode="black")
    rows += pair("pgd", 0.1, 0, 0, mode="black", source="other.safetensors")  # another source: not paired with FGSM
    worst = worst_rows(0.1, 240, 245)
    white = strong(rows, worst)
    assert white.verdict == "vanishes" and "under the worst case" in white.sentence
    assert [g.label for g in white.table[0].strong] == ["PGD", "APGD-CE", "worst case"]
    assert white.table[0].strong[-1].setting == "APGD-CE, FGSM, PGD"
    black = strong(rows, worst, key="fgsm_black")
    assert black.verdict == "survives" and [g.label for g in black.table[0].strong] == ["PGD"]
    assert black.table[0].strong[0].mixup_top1 == 0.45


def test_the_strongest_exact_setting_of_an_attack_is_read():
    rows = pair("fgsm", 0.1, 500, 620)
    rows += pair("pgd", 0.1, 300, 300, steps=10)  # weaker: fewer steps
    rows += pair("pgd", 0.1, 100, 100, steps=200, precision="bf16")  # not exact
    rows += pair("pgd", 0.1, 200, 300, steps=50, restarts=5)  # read this one
    (g,) = strong(rows).table[0].strong
    assert (g.erm_top1, g.mixup_top1, g.setting) == (0.2, 0.3, "50 steps, 5 restarts")
    assert claims.paired_rows(rows, "pgd", "white", 0.1, 999) is None
