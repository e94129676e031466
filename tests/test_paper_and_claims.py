import pytest

from robustbench_mixup import paper
from robustbench_mixup.claims import RULE, Estimate, verdict


def test_paper_tables_hold_the_published_numbers():
    assert len(paper.TABLE2) == 12 and {r.noise for r in paper.TABLE2} == {0.2, 0.5, 0.8}
    erm50 = next(r for r in paper.TABLE2 if r.noise == 0.5 and r.method == "ERM")
    assert (erm50.test_best, erm50.test_last, erm50.train_real, erm50.train_corrupted) == (18.8, 44.6, 0.26, 0.64)
    assert paper.table3("white", "top1", "mixup").fgsm == 75.2 and paper.table3("black", "top1", "mixup").ifgsm == 40.9
    assert paper.CIFAR_TEST_ERROR[("PreAct ResNet-18", "cifar10")] == (5.6, 4.2)
    assert "1710.09412" in paper.CITATION
    with pytest.raises(KeyError):
        paper.table3("grey", "top1", "ERM")


def test_every_mixup_row_of_table2_memorizes_less_than_erm_as_the_paper_says():
    for noise in (0.2, 0.5, 0.8):
        rows = {r.method.split(" (")[0]: r for r in paper.TABLE2 if r.noise == noise}
        assert rows["mixup"].train_corrupted > rows["ERM"].train_corrupted


@pytest.mark.parametrize(
    "erm, mixup, direction, expected",
    [
        ((0.5, 0.45, 0.55), (0.3, 0.25, 0.35), "lower", "reproduced"),
        ((0.5, 0.45, 0.55), (0.7, 0.65, 0.75), "lower", "not reproduced"),
        ((0.5, 0.45, 0.55), (0.52, 0.47, 0.57), "lower", "inconclusive"),
        ((0.5, 0.45, 0.55), (0.5, 0.45, 0.55), "lower", "inconclusive"),  # equal intervals overlap
        ((0.1, 0.05, 0.15), (0.8, 0.7, 0.9), "higher", "reproduced"),
        ((0.8, 0.7, 0.9), (0.1, 0.05, 0.15), "higher", "not reproduced"),
        ((0.97, 0.96, 0.98), (0.965, 0.955, 0.975), "no_worse_higher", "reproduced"),
        ((0.97, 0.96, 0.98), (0.90, 0.88, 0.92), "no_worse_higher", "not reproduced"),
        ((0.90, 0.88, 0.92), (0.97, 0.96, 0.98), "no_worse_higher", "reproduced"),
    ],
)
def test_verdict_rule(erm, mixup, direction, expected):
    assert verdict(Estimate(*erm), Estimate(*mixup), direction) == expected


def test_estimates_must_lie_in_their_interval_and_the_rule_is_stated():
    with pytest.raises(ValueError, match="interval"):
        Estimate(0.9, 0.1, 0.5)
    with pytest.raises(ValueError, match="direction"):
        verdict(Estimate(0.5, 0.4, 0.6), Estimate(0.5, 0.4, 0.6), "sideways")
    assert "inconclusive" in RULE and "overlap" in RULE
