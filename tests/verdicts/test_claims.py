"""The claims: selection rules on hand-made rows, the paired verdict rule, pooling over seeds, Holm's
correction, and the strong-attack verdicts."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from robustbench_mixup.measures import stats
from robustbench_mixup.measures.stats import wilson_interval
from robustbench_mixup.settings.config import ATTACKS
from robustbench_mixup.verdicts import claims
from robustbench_mixup.verdicts import strong as strong_verdicts
from robustbench_mixup.verdicts.claims import ALPHA, CLAIMS, MARGIN, ClaimSpec, RunResults, assess

COMMANDS = {
    "train": "robust-eval train",
    "fgsm": "robust-eval fgsm --eps 0 0.1 --run r",
    "ifgsm": "robust-eval ifgsm --eps 0.1 --run r",
    "probe": "robust-eval probe --run r",
    "sweep": "robust-eval sweep corrupt --name r",
}


def right(n, k, start=0):
    """Examples start, ..., start + k - 1 of n are True."""
    return (np.arange(n) >= start) & (np.arange(n) < start + k)


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


def probe_rows(lam, erm_missed, mix_missed, erm_norms=None, mix_norms=None, *, pairs=None, split="train",
               same_class="exclude"):  # fmt: skip
    pairs = len(erm_missed) if pairs is None else pairs
    erm_norms = np.ones(pairs) if erm_norms is None else erm_norms
    mix_norms = np.ones(pairs) if mix_norms is None else mix_norms
    return [{"model": m, "split": split, "same_class": same_class, "pairs": pairs, "seed": 0, "lam": lam,
             "miss_rate": float(np.mean(miss)), "grad_norm": float(np.mean(norms)), "missed": miss, "norms": norms}
            for m, miss, norms in (("erm", erm_missed, erm_norms), ("mixup", mix_missed, mix_norms))]  # fmt: skip


def job(noise, alpha, fits, *, seed=0, dropout=0.0):
    """A finished sweep job; `fits`: per corrupted example, whether the model predicts its corrupted label."""
    fits = np.asarray(fits, dtype=bool)
    return {"noise": noise, "alpha": alpha, "dropout": dropout, "seed": seed, "train_corrupted_err": 1 - fits.mean(),
            "corrupted_fit": fits, "n_corrupted": len(fits), "test_err": 0.2, "history": []}  # fmt: skip


def clean(erm, mixup):
    return [{"model": "erm", "split": "test", "n": len(erm), "correct": erm},
            {"model": "mixup", "split": "test", "n": len(mixup), "correct": mixup}]  # fmt: skip


SWEEP = {"dataset": "mnist-5k", "model": "smallcnn"}


def results(**kw) -> RunResults:
    return RunResults(**{"dataset": "mnist-5k", "model": "smallcnn", "claim_eps": 0.1, **kw})


def by_key(group, commands=COMMANDS) -> dict[str, claims.Claim]:
    group = [group] if isinstance(group, RunResults) else group
    return {c.key: c for c in assess(group, commands=commands)}


# --- the table ----------------------------------------------------------------------------------------------


def test_every_claim_row_has_a_distinct_key_and_a_valid_direction_stage_and_unit():
    assert len({s.key for s in CLAIMS}) == len(CLAIMS)
    for s in CLAIMS:
        assert s.direction in claims.DIRECTIONS and s.stage in claims.FILLED_BY and s.unit in ("%", "")
    with pytest.raises(ValueError, match="direction"):
        ClaimSpec("k", "c", "p", "sideways", "%", "fgsm", claims.clean_points)
    with pytest.raises(ValueError, match="stage"):
        ClaimSpec("k", "c", "p", "lower", "%", "nowhere", claims.clean_points)


def test_an_unmeasured_claim_says_why_and_carries_the_command_of_its_stage():
    got = by_key(results())
    assert all(c.verdict == "not measured" and c.effect is None for c in got.values())
    assert got["fgsm_white"].command == COMMANDS["fgsm"] and got["memorization"].command == COMMANDS["sweep"]
    assert got["fgsm_white"].note == "FGSM has not been run in the white box"
    assert got["probe_miss_rate"].note == "the probe has not been run"
    assert "no memorization sweep" in got["memorization"].note


# --- the rule -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lo, hi, direction, expected",
    [
        (-0.05, -0.01, "lower", "claimed"), (0.01, 0.05, "lower", "other"), (-0.01, 0.01, "lower", "neither"),
        (0.01, 0.05, "higher", "claimed"), (-0.05, -0.01, "higher", "other"), (-0.01, 0.0, "higher", "neither"),
        (-0.005, 0.02, "no_worse", "claimed"), (-0.05, -0.02, "no_worse", "other"),
        (-0.02, 0.01, "no_worse", "neither"),
    ],
)  # fmt: skip
def test_the_side_of_an_interval(lo, hi, direction, expected):
    effect = stats.PairedDifference((lo + hi) / 2, lo, hi, 0.5, 100, 0, 0)
    assert claims.side(effect, direction) == expected


def test_attack_claims_read_the_claim_eps_and_keep_every_eps_for_the_curve():
    rows = pair("fgsm", 0.05, 600, 650) + pair("fgsm", 0.1, 500, 700) + pair("fgsm", 0.2, 300, 250)
    rows += pair("fgsm", 0.0, 990, 990)  # ε = 0 is no attack
    c = by_key(results(attack_rows=rows))["fgsm_white"]
    assert c.at == 0.1 and [x for x, _ in c.points] == [0.05, 0.1, 0.2] and c.axis == "ε"
    expected = stats.paired_difference(~right(1000, 500), ~right(1000, 700))  # error, paired per example
    assert (c.effect.diff, c.effect.lo, c.effect.hi) == pytest.approx((expected.diff, expected.lo, expected.hi))
    assert c.effect.diff == pytest.approx(-0.2) and c.verdict == "reproduced" and c.erm == pytest.approx(0.5)
    assert c.where == "ε = 0.1, n = 1000" and c.note == ""
    # not evaluated at the claim's ε: the nearest ε is read, and the note says so
    c = by_key(results(attack_rows=rows, claim_eps=0.17))["fgsm_white"]
    assert c.at == 0.2 and c.verdict == "contradicted" and "claim's ε = 0.17" in c.note


def test_an_attack_claim_ignores_other_backends_and_needs_both_models_with_outcomes():
    rows = pair("fgsm", 0.1, 500, 700, backend="torchattacks")
    assert by_key(results(attack_rows=rows))["fgsm_white"].verdict == "not measured"
    rows = [outcome_row("erm", "fgsm", 0.1, 500)]
    assert by_key(results(attack_rows=rows))["fgsm_white"].verdict == "not measured"
    rows = pair("fgsm", 0.1, 500, 700, stored=False)
    c = by_key(results(attack_rows=rows))["fgsm_white"]
    assert c.verdict == "not measured" and "per-example outcomes" in c.note


def test_black_box_claims_read_the_surrogate_rows():
    rows = pair("fgsm", 0.1, 500, 500, mode="black") + pair("fgsm", 0.1, 900, 100, mode="black", source="x.st")
    c = by_key(results(attack_rows=rows))["fgsm_black"]
    assert c.effect.diff == 0 and "source surrogate" in c.where


def test_probe_claims_hold_only_at_every_lambda():
    n = 400
    rows = []
    for lam in (0.0, 0.25, 0.5, 0.75, 1.0):  # λ = 0 and 1 are the training points: not part of the claim
        rows += probe_rows(lam, right(n, 80), right(n, 20))
    c = by_key(results(probe_rows=rows))["probe_miss_rate"]
    assert [x for x, _ in c.points] == [0.25, 0.5, 0.75] and c.verdict == "reproduced"
    assert c.holds == "holds at every λ (3)"
    # one λ where mixup misses significantly more: the claim as worded is contradicted there
    rows += probe_rows(0.1, right(n, 10), right(n, 90))
    c = by_key(results(probe_rows=rows))["probe_miss_rate"]
    assert c.verdict == "contradicted" and c.at == 0.1 and c.effect.diff == pytest.approx(0.2)
    assert c.holds == "holds at 3 of 4 λ: 0.25, 0.50, 0.75"
    # one λ with no difference: not contradicted, not reproduced
    rows[-2:] = probe_rows(0.1, right(n, 10), right(n, 10))
    c = by_key(results(probe_rows=rows))["probe_miss_rate"]
    assert c.verdict == "inconclusive" and c.at == 0.1 and c.power


def test_probe_prefers_the_largest_pair_count_and_training_pairs_of_different_classes():
    n = 200
    rows = probe_rows(0.5, right(n, 50), right(n, 10))
    rows += probe_rows(0.5, right(400, 10), right(400, 50), split="test")  # more pairs, but another setting
    rows += probe_rows(0.5, right(n, 10), right(n, 50), split="test")
    rows += probe_rows(0.5, right(n, 10), right(n, 50), same_class="include")
    rows += probe_rows(0.5, right(100, 10), right(100, 50))  # fewer pairs
    c = by_key(results(probe_rows=rows))["probe_miss_rate"]
    assert c.verdict == "reproduced" and c.where.startswith("200 train pairs of different classes")
    # without training pairs of different classes, ONE other setting is read, never a mix of two
    mixed = probe_rows(0.5, right(n, 10), right(n, 50), split="test")[:1]
    mixed += probe_rows(0.5, right(n, 50), right(n, 10), same_class="include")[1:]
    mixed += probe_rows(0.5, right(n, 50), right(n, 10), same_class="include")[:1]
    c = by_key(results(probe_rows=mixed))["probe_miss_rate"]
    assert c.effect.diff == pytest.approx(-0.2) and c.where.startswith("200 train pairs (same class included)")
    no_blobs = [dict(r, missed=None, norms=None) for r in probe_rows(0.5, right(n, 50), right(n, 10))]
    c = by_key(results(probe_rows=no_blobs))["probe_miss_rate"]
    assert c.verdict == "not measured" and "again" in c.note


def test_the_gradient_norm_claim_is_a_paired_mean_difference():
    rng = np.random.default_rng(0)
    erm = rng.gamma(4.0, 1.0, 500)
    mix = erm * 0.5 + rng.normal(0, 0.1, 500)
    rows = probe_rows(0.5, right(500, 0), right(500, 0), erm, mix)
    c = by_key(results(probe_rows=rows))["probe_grad_norm"]
    expected = stats.paired_mean_difference(erm, mix)
    assert c.effect.diff == pytest.approx(expected.diff) and c.effect.diff == pytest.approx(np.mean(mix - erm))
    assert c.verdict == "reproduced" and c.unit == ""


def test_memorization_pairs_erm_and_the_largest_alpha_of_the_same_seed_on_the_same_corrupted_set():
    n = 300
    jobs = [job(0.5, 0.0, right(n, 290)), job(0.5, 1.0, right(n, 200)), job(0.5, 8.0, right(n, 100)),
            job(0.5, 8.0, right(n, 0), dropout=0.5), job(0.2, 8.0, right(n, 0)),
            job(0.8, 0.0, right(n, 300))]  # fmt: skip
    c = by_key(results(sweep_config=SWEEP, sweep_jobs=jobs))["memorization"]
    expected = stats.paired_difference(~right(n, 290), ~right(n, 100))
    assert c.effect.diff == pytest.approx(expected.diff) and c.verdict == "reproduced"
    assert c.where == "50% noise, mixup α = 8" and c.effect.seeds == 1
    # every seed of the sweep is a replicate
    jobs += [job(0.5, 0.0, right(n, 280), seed=1), job(0.5, 8.0, right(n, 120), seed=1)]
    c = by_key(results(sweep_config=SWEEP, sweep_jobs=jobs))["memorization"]
    assert c.effect.seeds == 2 and c.effect.per_seed == pytest.approx((190 / n, 160 / n))


def test_memorization_uses_only_a_sweep_of_the_runs_dataset_and_network():
    jobs = [job(0.5, 0.0, right(100, 90)), job(0.5, 8.0, right(100, 10))]
    other = {"dataset": "mnist-5k", "model": "smallcnn"}
    c = by_key(results(dataset="digits", model="mlp", sweep_config=other, sweep_jobs=jobs))["memorization"]
    assert c.verdict == "not measured"
    assert c.note == "the sweep named like the run trained smallcnn on mnist-5k, not this run's mlp on digits"


@pytest.mark.parametrize("erm_k, mix_k, shift, expected", [(900, 896, 0, "reproduced"), (900, 800, 0, "contradicted"),
                                                            (900, 880, 60, "inconclusive")])  # fmt: skip
def test_clean_accuracy_is_judged_against_the_margin(erm_k, mix_k, shift, expected):
    c = by_key(results(clean_rows=clean(right(1000, erm_k), right(1000, mix_k, shift))))["clean_accuracy"]
    assert c.verdict == expected and c.effect.diff == pytest.approx((mix_k - erm_k) / 1000)
    assert MARGIN == 0.01 and claims.claim_p(c.effect, "no_worse") < 1


def test_seeds_are_replicates_pooled_by_the_hierarchical_bootstrap():
    runs = [results(attack_rows=pair("fgsm", 0.1, 500, 700 - 10 * s)) for s in range(3)]
    c = by_key(runs)["fgsm_white"]
    assert c.effect.seeds == 3 and c.seeds == 3 and c.runs == 3 and "3 seeds" in c.effect.method
    assert c.effect.per_seed == pytest.approx((-0.2, -0.19, -0.18))
    assert c.effect.diff == pytest.approx(-0.19) and c.verdict == "reproduced"
    assert c.effect.method.startswith("3 seeds × the same 1000 units (crossed)")  # the same test images
    assert "seed-to-seed" in claims.seeds_statement([c])
    # a run that has not measured it is left out, and the note says so
    runs.append(results())
    c = by_key(runs)["fgsm_white"]
    assert c.effect.seeds == 3 and "measured in 3 of 4 runs" in c.note
    assert "not accounted for" in claims.seeds_statement(list(by_key(runs[0]).values()))
    # a claim resting on one seed beside claims on several is named
    runs[0] = results(attack_rows=pair("fgsm", 0.1, 500, 700), clean_rows=clean(right(1000, 900), right(1000, 900)))
    statement = claims.seeds_statement(list(by_key(runs).values()))
    assert statement.startswith("3 seeds: each seed") and statement.endswith("mixup's clean accuracy is no worse "
                                                                           "(by at most 1 point).")  # fmt: skip


def test_the_power_of_a_group_names_seeds_or_test_examples():
    # seeds that differ more than the shared test images do: more seeds would settle it
    runs = [results(attack_rows=pair("fgsm", 0.1, 500, 500 + k)) for k in (10, 30, 50)]
    c = by_key(runs)["fgsm_white"]
    assert c.verdict == "inconclusive" and re.fullmatch(r"about \d+ seeds would detect .*", c.power), c.power
    assert int(c.power.split()[1]) > 3
    # a difference the shared test images' own variation hides: more seeds cannot help
    runs = [results(attack_rows=pair("fgsm", 0.1, 500, 501, shift=300)) for _ in range(3)]
    c = by_key(runs)["fgsm_white"]
    assert c.verdict == "inconclusive" and "more test examples, not more seeds" in c.power, c.power


def test_holm_turns_a_verdict_that_is_significant_alone_inconclusive():
    # FGSM: discordant counts whose exact McNemar p lies between ALPHA / 2 and ALPHA, interval excluding 0
    def fgsm(n01, n10):  # ERM alone right on n10 examples, mixup alone on n01
        return pair("fgsm", 0.1, 500, 500 + n01 - n10, shift=n10)

    n01, n10 = next((a, b) for a in range(20, 80) for b in range(a) if ALPHA / 2 < stats.mcnemar_p(a, b) < ALPHA
                    and stats.paired_difference(right(1000, 500), right(1000, 500 + a - b, b)).lo > 0)  # fmt: skip
    alone = by_key(results(attack_rows=fgsm(n01, n10)))["fgsm_white"]
    assert alone.verdict == "reproduced" and alone.p_holm == alone.p_value  # one claim: nothing to correct
    # beside a second claim that finds nothing (black box, p = 1), Holm doubles the smaller p-value
    got = by_key(results(attack_rows=fgsm(n01, n10) + pair("fgsm", 0.1, 500, 500, mode="black")))
    c = got["fgsm_white"]
    assert got["fgsm_black"].p_value == 1 and got["fgsm_black"].verdict == "inconclusive"
    assert c.p_holm == pytest.approx(2 * c.p_value) and c.p_holm >= ALPHA
    assert c.verdict == "inconclusive" and c.effect.hi < 0  # its interval alone would say reproduced
    assert "reproduced alone" in c.note and "not after Holm's correction over 2 claims" in c.note
    assert c.power.startswith("about ")


def test_an_inconclusive_claim_says_how_many_examples_would_detect_it():
    erm, mix = right(1000, 500), right(1000, 510, start=100)  # discordant both ways: 100 and 110 examples
    c = by_key(results(attack_rows=pair("fgsm", 0.1, 500, 510, shift=100)))["fgsm_white"]
    d = stats.paired_difference(~erm, ~mix)
    assert c.verdict == "inconclusive"
    assert c.power.startswith(f"about {stats.examples_for_power(d.n01, d.n10, d.n):,} test examples")


def worst_rows(eps, erm, mixup, *, n=1000, shift=100, attacks=("apgd-ce", "fgsm", "pgd")):
    out = []
    for model, k, start in (("erm", erm, 0), ("mixup", mixup, shift)):
        lo, hi = wilson_interval(k, n)
        correct = (torch.arange(n) >= start) & (torch.arange(n) < start + k)
        out.append({"run": "r", "model": model, "eps": eps, "n": n, "attacks": list(attacks), "top1": k / n,
                    "top1_lo": lo, "top1_hi": hi, "correct": correct})  # fmt: skip
    return out


def strong(rows, worst=(), key="fgsm_white"):
    return {v.key: v for v in strong_verdicts.strong_attack_verdicts(rows, worst)}[key]


def test_strong_verdicts_cover_both_fgsm_claims_in_order():
    got = strong_verdicts.strong_attack_verdicts([])
    assert [(v.key, v.mode) for v in got] == [("fgsm_white", "white"), ("fgsm_black", "black")]
    assert strong_verdicts.STRONG == ("pgd", "apgd-ce", "apgd-dlr", "square")


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
    fgsm = strong_verdicts.Gain("fgsm", "FGSM", 0.5, 0.6, stats.paired_difference(torch.arange(100) < 50,
                                                                         torch.arange(100) < 60))  # fmt: skip
    more = strong_verdicts.Gain("pgd", "PGD", 0.2, 0.35, stats.paired_difference(torch.arange(100) < 20,
                                                                        torch.arange(100) < 35))  # fmt: skip
    same = strong_verdicts.Gain("pgd", "PGD", 0.2, 0.3, stats.paired_difference(torch.arange(100) < 20,
                                                                       torch.arange(100) < 30))  # fmt: skip
    assert "gain of 10.0 points grows to 15.0 under PGD" in strong_verdicts.describe(fgsm, more, method="mixup")
    assert "gain of 10.0 points stays at 10.0 under PGD" in strong_verdicts.describe(fgsm, same, method="mixup")
    unpaired = strong_verdicts.Gain("pgd", "PGD", 0.2, 0.3, None)
    assert unpaired.outcome == "not paired"
    assert strong_verdicts.describe(fgsm, unpaired, method="mixup").startswith("PGD: not paired: re-run")


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
    assert [(c.attack, c.eps, c.n) for c in v.needs] == [(a, (0.1,), 1000) for a in strong_verdicts.STRONG]
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
    assert black.table[0].strong[0].other_top1 == 0.45


def test_the_strongest_exact_setting_of_an_attack_is_read():
    rows = pair("fgsm", 0.1, 500, 620)
    rows += pair("pgd", 0.1, 300, 300, steps=10)  # weaker: fewer steps
    rows += pair("pgd", 0.1, 100, 100, steps=200, precision="bf16")  # not exact
    rows += pair("pgd", 0.1, 200, 300, steps=50, restarts=5)  # read this one
    (g,) = strong(rows).table[0].strong
    assert (g.erm_top1, g.other_top1, g.setting) == (0.2, 0.3, "50 steps, 5 restarts")
    assert claims.paired_rows(rows, "pgd", "white", 0.1, 999, method="mixup") is None


def test_a_p_value_too_small_for_a_float_is_not_printed_as_zero():
    assert claims.format_p(0.0) == "< 1e-300" and claims.format_p(0.0123) == "0.012"
    assert stats.mcnemar_p(2000, 0) == 0.0  # 2 · 2^-2000 underflows


def test_the_no_worse_p_value_is_valid_at_the_margin():
    """When mixup is exactly MARGIN worse, the p-value Holm receives is at most 5% in at most ~5% of draws."""
    rng = np.random.default_rng(3)
    small = 0
    for table in rng.multinomial(1000, [0.85, 0.06, 0.05, 0.04], size=400):  # b − a = −1 point
        both, only_a, only_b, _ = table
        a = np.zeros(1000, bool)
        b = np.zeros(1000, bool)
        a[: both + only_a] = True
        b[:both] = True
        b[both + only_a : both + only_a + only_b] = True
        small += claims.claim_p(stats.pooled_effect([(a, b)]), "no_worse") <= 0.05
    assert small / 400 <= 0.075


def test_runs_measured_in_another_setting_are_not_pooled():
    runs = [results(attack_rows=pair("fgsm", 0.1, 500, 700)), results(attack_rows=pair("fgsm", 0.1, 250, 350, n=500))]
    c = by_key(runs)["fgsm_white"]
    assert c.effect.seeds == 1 and c.runs == 1
    assert "1 run(s) measured in another setting (ε = 0.1, n = 500) left out of the pool" in c.note


def test_a_sweep_seed_in_several_runs_results_is_counted_once():
    """Two runs of a group whose sweeps used the same seed hold the same replicate: pooled once, and said."""
    jobs = [job(0.5, 0.0, right(100, 90)), job(0.5, 8.0, right(100, 10))]
    runs = [results(sweep_config=SWEEP, sweep_jobs=jobs), results(sweep_config=SWEEP, sweep_jobs=jobs)]
    c = by_key(runs)["memorization"]
    assert c.effect.seeds == 1 and "sweep seed 0 appears in several runs' results: counted once" in c.note


def test_a_probe_without_an_inner_lambda_says_so():
    rows = probe_rows(0.0, right(50, 5), right(50, 9)) + probe_rows(1.0, right(50, 5), right(50, 9))
    c = by_key(results(probe_rows=rows))["probe_miss_rate"]
    assert c.verdict == "not measured" and "no λ strictly between 0 and 1" in c.note and "--lambdas 3" in c.note
