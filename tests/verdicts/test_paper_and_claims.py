import pytest

from robustbench_mixup.verdicts import paper
from robustbench_mixup.verdicts.claims import MARGIN, RULE


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


def test_the_rule_is_stated_in_words_the_report_prints():
    for words in ("paired difference", "reproduced", "contradicted", "inconclusive", "Holm", "every λ"):
        assert words in RULE
    assert f"−{100 * MARGIN:g} point" in RULE
