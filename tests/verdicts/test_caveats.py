"""A verdict that reads a strong attack whose 'incomplete' or 'not converged' indicator fired carries it."""

from robustbench_mixup.verdicts.strong import WORST, Gain, GainsAtEps, caveats


def _gain(attack, label):
    return Gain(attack, label, 0.5, 0.4, None)


def _indicator(name, attack="pgd", model="erm", status="fired", eps=0.1, n=1000):
    return {"indicator": name, "attack": attack, "model": model, "status": status, "eps": eps, "n": n}


HEAD = GainsAtEps(0.1, 1000, _gain("fgsm", "FGSM"), (_gain("pgd", "PGD"), _gain(WORST, "worst case")))


def test_fired_convergence_indicators_of_the_attacks_read_become_caveats():
    found = caveats([_indicator("incomplete"), _indicator("doubling", model="mixup", eps=0.05)], HEAD, "mixup")
    assert found == ("ERM's PGD accuracy may be overstated: the loss was still rising at the last step",
                     "mixup's PGD accuracy may be overstated: twice the steps changed the accuracy significantly "
                     "(not converged)")  # fmt: skip


def test_what_the_verdict_does_not_read_or_what_did_not_fire_is_no_caveat():
    assert caveats([_indicator("incomplete", status="ok"), _indicator("incomplete", status="noise"),
                    _indicator("incomplete", attack="apgd-ce"),  # not an attack of this ε's table
                    _indicator("incomplete", eps=0.05),  # another ε
                    _indicator("incomplete", n=500),  # other examples
                    _indicator("incomplete", model="cutmix"),  # another method
                    _indicator("gradients")], HEAD, "mixup") == ()  # fmt: skip
