"""The headline and the words beside every difference: each branch on hand-made verdicts, no measurement."""

from types import SimpleNamespace

import pytest

from robustbench_mixup.verdicts.claims import CLAIMS, Claim
from robustbench_mixup.verdicts.headline import (
    MOST,
    WORDS,
    claim_marks,
    comparison_headline,
    difference_words,
    headline,
    health,
    in_words,
)
from robustbench_mixup.verdicts.strong import StrongVerdict

SPECS = {s.key: s for s in CLAIMS}


def _claim(key: str, verdict: str, diff: float | None, *, method: str = "mixup", power: str = "", seeds: int = 1,
           at: float | None = 0.1, axis: str = "ε", where: str = "ε = 0.1, n = 1000") -> Claim:  # fmt: skip
    spec = SPECS[key]
    effect = None if diff is None else SimpleNamespace(diff=diff, lo=diff - 0.01, hi=diff + 0.01)
    return Claim(key, spec.wording(method), spec.paper, spec.direction, spec.unit, verdict, method=method,
                 where=where if effect else "", effect=effect, at=at if effect else None, axis=axis, power=power,
                 seeds=seeds)  # fmt: skip


def _strong(key: str, verdict: str, by: str = "PGD", caveats: tuple[str, ...] = ()) -> StrongVerdict:
    return StrongVerdict(key, SPECS[key].wording("mixup"), "white", verdict, "", decided_by=by, caveats=caveats)


LABELS = {"pgd": "PGD", "fgsm": "FGSM", "incomplete": "incomplete optimization", "gradients": "unusable gradients"}


def test_every_claim_has_its_words_and_the_words_follow_the_quantity_not_the_sign():
    assert set(WORDS) == set(SPECS)
    # +51.1 points of white-box FGSM error and −1.2 points of clean accuracy are both "worse"
    assert in_words(_claim("fgsm_white", "contradicted", 0.511)) == "mixup worse by 51.1 points"
    assert in_words(_claim("clean_accuracy", "inconclusive", -0.012)) == "mixup worse by 1.2 points"
    assert in_words(_claim("fgsm_black", "reproduced", -0.026)) == "mixup better by 2.6 points"
    assert in_words(_claim("probe_grad_norm", "inconclusive", 0.0109)) == "mixup higher by 0.0109"
    assert in_words(_claim("memorization", "reproduced", 0.8956)) == "mixup higher by 89.6 points"
    assert in_words(_claim("fgsm_white", "inconclusive", 0.0004)) == "mixup and ERM equal to the shown precision"
    assert in_words(_claim("fgsm_white", "not measured", None)) == ""
    # an accuracy difference (a strong attack's gain): higher is better
    assert difference_words("accuracy", "cutmix", -0.449) == "CutMix worse by 44.9 points"
    assert difference_words("accuracy", "mixup", 0.026) == "mixup better by 2.6 points"


def test_headline_says_what_holds_what_is_contradicted_what_is_undecided_and_the_caveats():
    claims = [
        _claim("fgsm_white", "contradicted", 0.511),
        _claim("fgsm_black", "reproduced", -0.026, where="ε = 0.1, n = 1000, source surrogate"),
        _claim("ifgsm_black", "inconclusive", -0.015, power="about 3,033 test examples would detect it"),
        _claim("memorization", "reproduced", 0.8956, at=None, axis="", where="50% noise"),
        _claim("probe_miss_rate", "not measured", None),
    ]
    strong = [_strong("fgsm_black", "vanishes"),
              _strong("fgsm_white", "no FGSM gain to test", by="",
                      caveats=("ERM's PGD accuracy may be overstated: the loss was still rising",))]  # fmt: skip
    state = health([{"status": "failed"}, {"status": "noise"}],
                   [{"attack": "pgd", "model": "erm", "indicator": "incomplete", "status": "fired", "eps": 0.1}],
                   attacked=True, labels=LABELS)  # fmt: skip
    lines = headline(claims, strong, state)
    assert len(lines) == 4
    held, against, undecided, caveats = lines
    assert held.startswith("Reproduced, 2 of 4: ")
    assert "“mixup lowers black-box FGSM error” (mixup better by 2.6 points; ε = 0.1" in held
    assert "but the gain vanishes under PGD" in held and "mixup higher by 89.6 points; 50% noise" in held
    assert (
        against == "Contradicted, 1 of 4: “mixup lowers white-box FGSM error” (mixup worse by 51.1 points; "
        "ε = 0.1, n = 1000)."
    )
    assert undecided.startswith("Undecided, 1 of 4: ") and "about 3,033 test examples would detect it" in undecided
    assert caveats.startswith("Caveats: 1 gradient-masking sanity check(s) failed")
    assert "ERM's PGD accuracy may be overstated" in caveats and "1 attack-failure indicator(s) fired (PGD on erm)" \
        in caveats  # fmt: skip
    assert "1 claim(s) not measured" in caveats and "one training seed" in caveats


def test_headline_leaves_out_the_sentences_with_nothing_to_say():
    all_held = [_claim("fgsm_white", "reproduced", -0.1, seeds=3), _claim("fgsm_black", "reproduced", -0.05, seeds=3)]
    ok = health([], [{"attack": "pgd", "model": "erm", "indicator": "incomplete", "status": "ok"}], attacked=True,
                labels=LABELS)  # fmt: skip
    assert ok.level == "ok"
    assert headline(all_held, [_strong("fgsm_white", "survives", by="the worst case")], ok) == [
        "Reproduced, 2 of 2: “mixup lowers white-box FGSM error” (mixup better by 10.0 points; ε = 0.1, n = 1000), "
        "and the gain survives under the worst case; and “mixup lowers black-box FGSM error” (mixup better by 5.0 "
        "points; ε = 0.1, n = 1000)."]  # fmt: skip
    assert headline([_claim("fgsm_white", "not measured", None)]) == [
        "Nothing is measured yet: run the stages the report lists to judge the paper's claims."
    ]


def test_long_lists_are_cut_and_counted():
    many = [_claim("fgsm_white", "inconclusive", 0.01, method=m) for m in ("mixup", "cutmix", "manifold-mixup",
                                                                            "label-smoothing", "mixup")]  # fmt: skip
    (line, caveat) = headline(many)
    assert line.count("“") == MOST and line.endswith("and 1 more.")
    assert "too few examples to tell" in line and caveat == (
        "Caveats: one training seed, so the intervals leave out seed-to-seed variation."
    )


@pytest.mark.parametrize(
    ("flags", "indicators", "attacked", "level"),
    [
        ([], [], False, "none"),
        ([], [{"status": "ok"}], True, "ok"),
        ([{"status": "noise"}], [{"status": "noise"}], True, "noise"),
        ([{"status": "unchecked"}], [], True, "noise"),
        ([{"status": "noise"}], [{"status": "fired", "attack": "pgd", "model": "erm", "indicator": "x"}], True,
         "failed"),
        ([{"status": "failed"}, {"status": "noise"}], [], True, "failed"),
        ([{}], [], True, "failed"),  # rows stored before statuses existed are failures
    ],
)  # fmt: skip
def test_health_is_the_worst_of_the_checks_and_the_indicators(flags, indicators, attacked, level):
    state = health(flags, indicators, attacked=attacked, labels=LABELS)
    assert state.level == level
    if level == "ok":
        assert state.summary == "every sanity check passed and no attack-failure indicator fired"
    if level == "failed" and state.fired:
        assert state.summary.startswith("1 attack-failure indicator(s) fired (PGD on erm)")


def test_a_claim_reading_an_attack_whose_indicator_fired_is_marked():
    c = _claim("fgsm_white", "contradicted", 0.5)
    fired = {"attack": "fgsm", "model": "erm", "indicator": "gradients", "status": "fired", "eps": 0.1}
    marks = claim_marks([c, _claim("fgsm_black", "reproduced", -0.02)],
                        [fired, {**fired, "eps": 0.05}, {**fired, "model": "cutmix"}, {**fired, "status": "ok"},
                         {**fired, "attack": "pgd"}], LABELS)  # fmt: skip
    assert marks == {"fgsm_white": ["ERM's FGSM accuracy may be overstated: unusable gradients fired"]}


def test_comparison_headline_agrees_differs_and_warns():
    a = [_claim("fgsm_white", "contradicted", 0.5), _claim("fgsm_black", "reproduced", -0.03),
         _claim("memorization", "reproduced", 0.9)]  # fmt: skip
    b = [_claim("fgsm_white", "contradicted", 0.4), _claim("fgsm_black", "inconclusive", -0.01),
         _claim("memorization", "not measured", None)]  # fmt: skip
    states = {"a": health([], [], attacked=True, labels=LABELS), "b": health([{}], [], attacked=True, labels=LABELS)}
    lines = comparison_headline({"a": a, "b": b}, states, datasets=["digits", "mnist-5k"])
    assert lines[0] == "The runs agree on 1 of 3 claims measured: “mixup lowers white-box FGSM error” contradicted " \
                       "in every run."  # fmt: skip
    assert lines[1] == ("They differ on 1: “mixup lowers black-box FGSM error” (a: reproduced, mixup better by 3.0 "
                        "points vs b: inconclusive, mixup better by 1.0 points).")  # fmt: skip
    assert lines[2].startswith("Measured in one run only, 1: “mixup memorizes fewer corrupted labels")
    assert lines[3] == ("Caveats: the runs use different datasets (digits, mnist-5k); sanity checks failed or "
                        "attack-failure indicators fired in b.")  # fmt: skip


def test_a_group_counts_each_seeds_strong_outcome_instead_of_the_first():
    pooled = _claim("fgsm_black", "reproduced", -0.03, seeds=3)
    same = [_strong("fgsm_black", "vanishes") for _ in range(3)]
    assert "but the gain vanishes under PGD in all 3 seeds" in headline([pooled], same)[0]
    mixed = [_strong("fgsm_black", "survives"), _strong("fgsm_black", "vanishes", by="APGD-CE"),
             _strong("fgsm_black", "vanishes")]  # fmt: skip
    assert "and under a strong attack the gain survives in 1, vanishes in 2 of 3 seeds" in headline([pooled], mixed)[0]


def _row(model, eps, n, steps, *, created="1"):
    return {"attack": "pgd", "mode": "white", "backend": "native", "model": model, "eps": eps, "n": n,
            "steps": steps, "step_size": 2.5 * eps / steps, "source": "", "created": created}  # fmt: skip


def test_the_figure_draws_the_setting_the_claims_read_and_a_model_stored_alone():
    """Per attack: the largest n; at each ε the strongest setting stored for both models; where only one model
    was evaluated (a stage cut short), its own strongest setting, so its curve is not lost."""
    from robustbench_mixup.verdicts.claims import stage_setting_rows

    rows = [_row(m, e, 1000, 20) for m in ("erm", "mixup") for e in (0.05, 0.1)]
    rows += [_row(m, e, 1000, 50) for m in ("erm", "mixup") for e in (0.1,)]  # stronger at 0.1
    rows += [_row(m, e, 100, 50) for m in ("erm", "mixup") for e in (0.05, 0.1)]  # another n
    rows += [_row("erm", 0.2, 1000, 20)]  # mixup not evaluated at 0.2
    drawn = {(r["model"], r["eps"], r["n"], r["steps"]) for r in stage_setting_rows(rows, ("erm", "mixup"))}
    assert drawn == {("erm", 0.05, 1000, 20), ("mixup", 0.05, 1000, 20), ("erm", 0.1, 1000, 50),
                     ("mixup", 0.1, 1000, 50), ("erm", 0.2, 1000, 20)}  # fmt: skip
