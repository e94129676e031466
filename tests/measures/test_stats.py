"""The paired statistics: intervals and tests checked against scipy and against formulas written out here,
and seeded simulations whose truth is known for coverage, detection and power."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from statistics import NormalDist

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from robustbench_mixup.measures.stats import (
    examples_for_power,
    holm,
    mcnemar_p,
    paired_difference,
    paired_mean_difference,
    pooled_effect,
    seeds_for_power,
    seeds_to_detect,
    student_t_cdf,
    student_t_quantile,
    units_for_power,
    wilson_interval,
)

Z95 = NormalDist().inv_cdf(0.975)


def outcomes(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-example right/wrong of methods a and b with the given 2×2 table of paired outcomes."""
    counts = [both, only_a, only_b, neither]
    return np.repeat([True, True, False, False], counts), np.repeat([True, False, True, False], counts)


def seed_outcomes(rng: np.random.Generator, n: int, effect: float, agree: float) -> tuple[np.ndarray, np.ndarray]:
    """One seed's paired outcomes: a right on 90%, the two disagreeing on 1 − `agree` of the examples, and
    b − a = `effect` in expectation."""
    only_b, only_a = (1 - agree + effect) / 2, (1 - agree - effect) / 2
    both = 0.90 - only_a
    return outcomes(*rng.multinomial(n, [both, only_a, only_b, 1 - both - only_a - only_b]))


def newcombe_10(both: int, only_a: int, only_b: int, neither: int, z: float = Z95) -> tuple[float, float, float]:
    """Newcombe (1998) method 10 for θ = P(b right) − P(a right), from the cells, with each Wilson limit
    as a root of its quadratic and the continuity-corrected φ (written independently of the package's version)."""
    n = both + only_a + only_b + neither
    right_b, right_a = both + only_b, both + only_a

    def wilson(r: int) -> tuple[float, float]:
        spread = z * math.sqrt(z * z + 4 * r * (1 - r / n))
        return (2 * r + z * z - spread) / (2 * (n + z * z)), (2 * r + z * z + spread) / (2 * (n + z * z))

    (lb, ub), (la, ua) = wilson(right_b), wilson(right_a)
    pb, pa = right_b / n, right_a / n
    margins = right_a * (only_b + neither) * right_b * (only_a + neither)
    cross = both * neither - only_a * only_b
    phi = 0.0 if margins == 0 else (cross - n / 2 if cross > n / 2 else min(cross, 0)) / math.sqrt(margins)
    theta = pb - pa
    lower = theta - math.sqrt(max(0.0, (pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa) + (ua - pa) ** 2))
    upper = theta + math.sqrt(max(0.0, (ub - pb) ** 2 - 2 * phi * (ub - pb) * (pa - la) + (pa - la) ** 2))
    return theta, max(-1.0, lower), min(1.0, upper)


# McNemar and the Newcombe interval.


@pytest.mark.parametrize("n01, n10", [(6, 0), (0, 9), (3, 7), (1, 1), (20, 35), (50, 50), (1400, 1600), (1600, 1400)])
def test_mcnemar_is_the_exact_binomial_test(n01, n10):
    expected = scipy_stats.binomtest(min(n01, n10), n01 + n10, 0.5).pvalue
    assert mcnemar_p(n01, n10) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_no_discordant_example_still_leaves_an_interval_around_zero():
    """Without Newcombe's correction of φ, identical outcomes would claim the difference is exactly 0."""
    d = paired_difference(*outcomes(500, 0, 0, 500))
    assert d.diff == 0 and d.lo < -0.001 and d.hi > 0.001
    shared = [outcomes(500, 0, 0, 500)] * 3  # three seeds, the same 1,000 test examples, never discordant
    for pooled in (pooled_effect(shared), pooled_effect(shared, shared_units=True)):
        assert pooled.diff == 0 and pooled.lo < 0 < pooled.hi


def test_mcnemar_without_discordant_examples_is_one():
    assert mcnemar_p(0, 0) == 1.0
    assert paired_difference(*outcomes(40, 0, 0, 10)).p_value == 1.0


@pytest.mark.parametrize(
    "table",
    [(880, 20, 50, 50), (36, 12, 2, 0), (0, 0, 30, 0), (10, 0, 0, 0), (0, 0, 0, 10), (5, 5, 5, 5), (1, 7, 0, 2)],
)
def test_paired_difference_is_newcombe_method_10(table):
    a, b = outcomes(*table)
    d = paired_difference(a, b)
    theta, lo, hi = newcombe_10(*table)
    assert (d.diff, d.lo, d.hi) == pytest.approx((theta, lo, hi), abs=1e-12)
    assert -1 <= d.lo <= d.diff <= d.hi <= 1
    assert (d.n, d.n01, d.n10) == (sum(table), table[2], table[1])
    assert d.p_value == mcnemar_p(table[2], table[1])


def test_paired_difference_takes_numpy_or_torch_and_rejects_anything_else():
    a, b = outcomes(30, 4, 9, 7)
    assert paired_difference(a, b) == paired_difference(torch.from_numpy(a), torch.from_numpy(b))
    wider = paired_difference(a, b, confidence=0.99)
    assert wider.lo < paired_difference(a, b).lo and wider.hi > paired_difference(a, b).hi
    with pytest.raises(TypeError):
        paired_difference(a.astype(float), b.astype(float))
    with pytest.raises(TypeError):
        paired_difference(a, b[:-1])
    with pytest.raises(TypeError):
        paired_difference(a.reshape(5, 10), b.reshape(5, 10))
    with pytest.raises(ValueError, match="confidence"):
        paired_difference(a, b, confidence=1.0)


def test_the_newcombe_interval_covers_a_known_difference():
    rng = np.random.default_rng(0)
    cells = [0.88, 0.02, 0.05, 0.05]  # both, only a, only b, neither: b − a = 3 points
    covered = 0
    for table in rng.multinomial(1000, cells, size=400):
        d = paired_difference(*outcomes(*table))
        covered += d.lo <= 0.03 <= d.hi
    assert covered / 400 >= 0.93  # measured: 96.2%


def test_pairing_detects_what_two_wilson_intervals_miss():
    """The reason for pairing: a 3-point gain on 1,000 shared examples that the two models mostly agree
    on. The paired interval excludes 0 almost always; the old rule, two separate Wilson intervals that
    must not overlap, rarely separates them."""
    rng = np.random.default_rng(0)
    paired = separate = 0
    for table in rng.multinomial(1000, [0.88, 0.02, 0.05, 0.05], size=200):  # a right 90%, b right 93%
        a, b = outcomes(*table)
        paired += paired_difference(a, b).lo > 0
        separate += wilson_interval(int(b.sum()), 1000)[0] > wilson_interval(int(a.sum()), 1000)[1]
    assert paired / 200 >= 0.90  # measured: 96.5%
    assert separate / 200 <= 0.40  # measured: 23.5%


# Student's t.


@pytest.mark.parametrize("df", [*range(1, 31), 0.5, 2.5, 100, 1000])
def test_student_t_matches_scipy(df):
    for t in [-40.0, -4.0, -2.1, -1.0, -0.3, 0.0, 0.3, 1.0, 2.1, 4.0, 40.0]:
        expected = scipy_stats.t.cdf(t, df)
        assert student_t_cdf(t, df) == pytest.approx(expected, rel=1e-9)
        assert student_t_cdf(-t, df) == pytest.approx(1 - expected, rel=1e-9, abs=1e-15)
    for p in [1e-6, 0.001, 0.025, 0.1, 0.3, 0.5, 0.8, 0.9, 0.975, 0.999, 1 - 1e-6]:
        assert student_t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9, abs=1e-12)


def test_student_t_rejects_bad_arguments():
    with pytest.raises(ValueError):
        student_t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        student_t_cdf(1.0, 0)


# Real-valued pairs.


def test_the_bootstrap_interval_agrees_with_normal_theory_on_a_large_sample():
    rng = np.random.default_rng(1)
    a = rng.normal(1.0, 1.0, 5000)
    b = a + rng.normal(0.05, 0.8, 5000)
    d = paired_mean_difference(a, b, seed=2)
    se = np.std(b - a, ddof=1) / math.sqrt(5000)
    assert d.diff == pytest.approx(np.mean(b - a)) and d.sd == pytest.approx(np.std(b - a, ddof=1))
    assert d.lo == pytest.approx(d.diff - Z95 * se, abs=0.15 * se)
    assert d.hi == pytest.approx(d.diff + Z95 * se, abs=0.15 * se)
    assert d.p_value < 0.01 and d.n == 5000
    assert paired_mean_difference(a, b, seed=2) == d  # seeded: the same draws every time


def test_the_sign_flip_p_value_is_the_randomization_distribution():
    values = np.array([1.0, 2.0, 3.0, 4.0, -0.5])
    signs = np.array(list(itertools.product([-1, 1], repeat=5)))
    exact = np.mean(np.abs(signs @ values) >= values.sum() - 1e-12)  # all 32 sign patterns: 4/32
    d = paired_mean_difference(np.zeros(5), values, draws=20000, seed=0)
    assert d.p_value == pytest.approx(exact, abs=0.01)
    assert paired_mean_difference(np.zeros(4), np.zeros(4)).p_value == 1.0


def test_the_sign_flip_p_value_is_near_uniform_without_a_difference():
    rng = np.random.default_rng(3)
    p = [paired_mean_difference(rng.normal(size=60), rng.normal(size=60), draws=1000, seed=i).p_value
         for i in range(100)]  # fmt: skip
    assert sum(v < 0.05 for v in p) <= 10
    assert 0.35 < np.mean(p) < 0.65


def test_paired_mean_difference_checks_its_inputs():
    with pytest.raises(TypeError):
        paired_mean_difference(np.zeros(3, dtype=bool), np.zeros(3, dtype=bool))
    with pytest.raises(TypeError):
        paired_mean_difference(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError):
        paired_mean_difference(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError):
        paired_mean_difference(np.array([0.0, np.nan]), np.zeros(2))
    torch_d = paired_mean_difference(torch.zeros(10), torch.arange(10.0))
    assert torch_d == paired_mean_difference(np.zeros(10), np.arange(10.0))


# Pooling over seeds.


def test_one_seed_is_the_paired_comparison_itself():
    a, b = outcomes(30, 4, 9, 7)
    effect, single = pooled_effect([(a, b)]), paired_difference(a, b)
    assert (effect.diff, effect.lo, effect.hi, effect.p_value) == (single.diff, single.lo, single.hi, single.p_value)
    assert (effect.seeds, effect.n, effect.n01, effect.n10, effect.sd_seed) == (1, 50, 9, 4, None)
    assert effect.method == "paired, Newcombe interval, exact McNemar" and effect.per_seed == (single.diff,)
    assert effect.sd_unit == pytest.approx(np.std(b.astype(int) - a.astype(int), ddof=1))
    x, y = np.arange(8.0), np.arange(8.0) ** 1.5
    continuous, mean = pooled_effect([(x, y)], seed=4), paired_mean_difference(x, y, seed=4)
    assert (continuous.diff, continuous.lo, continuous.hi, continuous.p_value) == (mean.diff, mean.lo, mean.hi,
                                                                                   mean.p_value)  # fmt: skip
    assert continuous.method == "paired bootstrap over pairs, sign-flip test" and continuous.n01 is None


def test_five_or_more_seeds_use_the_t_interval_over_seeds():
    rng = np.random.default_rng(5)
    pairs = [seed_outcomes(rng, 500 + 10 * s, 0.03 + 0.01 * rng.normal(), 0.92) for s in range(6)]
    effect = pooled_effect(pairs)
    per_seed = [b.mean() - a.mean() for a, b in pairs]
    lo, hi = scipy_stats.t.interval(0.95, 5, loc=np.mean(per_seed), scale=scipy_stats.sem(per_seed))
    assert (effect.diff, effect.lo, effect.hi) == pytest.approx((np.mean(per_seed), lo, hi), rel=1e-9)
    assert effect.p_value == pytest.approx(scipy_stats.ttest_1samp(per_seed, 0.0).pvalue, rel=1e-9)
    assert effect.per_seed == pytest.approx(per_seed) and effect.sd_seed == pytest.approx(np.std(per_seed, ddof=1))
    assert (effect.seeds, effect.n, effect.method) == (6, 500, "t over 6 seeds")
    assert effect.n01 == sum(int((~a & b).sum()) for a, b in pairs)
    assert effect.n10 == sum(int((a & ~b).sum()) for a, b in pairs)


def test_the_hierarchical_bootstrap_covers_the_seed_population_mean_binary():
    """3 seeds, 1,000 examples each, per-seed effects N(3 points, 1 point²), models agreeing on 92%."""
    rng = np.random.default_rng(6)
    covered = 0
    for i in range(200):
        pairs = [seed_outcomes(rng, 1000, effect, 0.92) for effect in rng.normal(0.03, 0.01, 3)]
        effect = pooled_effect(pairs, seed=i)
        covered += effect.lo <= 0.03 <= effect.hi
    assert effect.method == "hierarchical bootstrap over 3 seeds, t with 2 df" and effect.sd_seed is not None
    assert covered / 200 >= 0.93  # measured: 100% (a plain percentile interval: about 90%)


def test_the_hierarchical_bootstrap_covers_the_seed_population_mean_continuous():
    """3 seeds, 500 pairs each, per-seed effects N(0.3, 0.05²), per-pair noise of sd 1."""
    rng = np.random.default_rng(7)
    covered = 0
    for i in range(200):
        pairs = []
        for effect in rng.normal(0.3, 0.05, 3):
            a = rng.normal(1.0, 1.0, 500)
            pairs.append((a, a + effect + rng.normal(0.0, 1.0, 500)))
        result = pooled_effect(pairs, draws=1000, seed=i)
        covered += result.lo <= 0.3 <= result.hi
    assert covered / 200 >= 0.93  # measured: 100% (a plain percentile interval: about 92%)


def shared_test_set(rng: np.random.Generator, seeds: int, n: int = 1000) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeds scored on ONE test set of `n` images drawn from a population where 85% are easy for both methods,
    7% favour b, 5% favour a and 3% are hard for both; each seed adds its own shift to the favoured ones. The
    population difference b − a is 0.07·0.6 − 0.05·0.6 = 1.2 points."""
    kind = rng.choice(4, size=n, p=[0.85, 0.07, 0.05, 0.03])
    pa = np.array([0.98, 0.2, 0.8, 0.05])[kind]
    pb = np.array([0.98, 0.8, 0.2, 0.05])[kind]
    pairs = []
    for shift in rng.normal(0.0, 0.03, seeds):  # seed-to-seed variation with mean 0
        favoured = np.clip(pb + shift * (kind == 1), 0, 1)
        pairs.append((rng.random(n) < pa, rng.random(n) < favoured))
    return pairs


@pytest.mark.parametrize("seeds", [3, 5])
def test_seeds_scored_on_the_same_test_set_are_a_crossed_design(seeds):
    """Every run of a group is scored on the same test images: their variation is shared by the seeds and does
    not average out. The crossed interval covers the population difference; intervals that treat each seed's
    examples as its own draw (nested) do not."""
    rng = np.random.default_rng(11)
    truth = 0.07 * 0.6 - 0.05 * 0.6
    crossed = nested = 0
    for i in range(200):
        pairs = shared_test_set(rng, seeds)
        a, b = pooled_effect(pairs, shared_units=True, seed=i), pooled_effect(pairs, draws=500, seed=i)
        crossed += a.lo <= truth <= a.hi
        nested += b.lo <= truth <= b.hi
    assert a.method.startswith(f"{seeds} seeds × the same 1000 units (crossed)") and a.var_units > 0
    assert crossed / 200 >= 0.93
    if seeds == 5:  # the t interval over 5 seeds sees only the seeds' spread: measured 82% (crossed: 97%)
        assert nested / 200 < 0.9


def test_pooled_effect_checks_its_inputs():
    a, b = outcomes(30, 4, 9, 7)
    with pytest.raises(TypeError, match="mix"):
        pooled_effect([(a, b), (a.astype(float), b.astype(float))])
    with pytest.raises(ValueError):
        pooled_effect([])
    with pytest.raises(ValueError):
        pooled_effect([(a, b), (a[:0], b[:0])])
    two = pooled_effect([(a, b), (torch.from_numpy(b), torch.from_numpy(a))])
    assert two.diff == pytest.approx(0.0) and two.lo < 0 < two.hi and two.method.endswith("t with 1 df")


# Holm and power.


def test_holm_adjusts_in_the_order_given():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == []
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([0.02]) == [0.02]
    with pytest.raises(ValueError):
        holm([1.5])


def test_examples_for_power_achieves_the_power_by_simulation():
    n01, n10, n = 50, 20, 1000
    need = examples_for_power(n01, n10, n)
    assert need == 609  # (1.96·√0.07 + 0.8416·√0.0691)² / 0.03²
    rng = np.random.default_rng(8)
    draws = rng.multinomial(need, [n01 / n, n10 / n, 1 - (n01 + n10) / n], size=300)
    rejected = np.mean([mcnemar_p(int(x), int(y)) < 0.05 for x, y, _ in draws])
    assert 0.74 <= rejected <= 0.86  # measured: 77% (the exact test is a little conservative)
    assert examples_for_power(20, 20, 1000) is None and examples_for_power(0, 0, 10) is None
    assert examples_for_power(20, 50, 1000) == need  # the direction does not matter


def test_units_and_seeds_for_power_in_closed_form():
    assert units_for_power(1.0, 1.0) == 8  # (1.960 + 0.842)² = 7.85
    assert units_for_power(-0.5, 1.0) == 32  # 4 · 7.85 = 31.4
    assert units_for_power(0.1, 0.5, power=0.9, alpha=0.01) == 372  # (2.576 + 1.282)² · 25 = 371.97
    assert units_for_power(0.0, 1.0) is None
    assert seeds_for_power(0.03, None) is None and seeds_for_power(0.0, 0.01) is None
    assert seeds_for_power(0.03, 0.0) == 2
    assert seeds_for_power(0.01, 1.0, max_seeds=50) == 50
    seeds = np.arange(2, 2000)
    t_sum = scipy_stats.t.ppf(0.975, seeds - 1) + scipy_stats.t.ppf(0.8, seeds - 1)
    for ratio in [0.3, 1.0, 2.0, 5.0]:
        expected = int(seeds[np.argmax(seeds >= (t_sum * ratio) ** 2)])  # the first S that is enough
        assert seeds_for_power(0.02, 0.02 * ratio) == expected
        assert expected >= units_for_power(0.02, 0.02 * ratio)  # t quantiles exceed the normal ones


def test_stats_loads_without_torch():
    code = "import sys, robustbench_mixup.stats; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_few_seeds_that_differ_get_at_least_the_t_intervals_error():
    """Resampling 2-4 seeds with replacement shrinks their spread by (S − 1)/S: the t interval's own SE is a floor."""
    rng = np.random.default_rng(12)
    pairs = []
    for shift in (0.0, 1.0, 2.0):  # seeds far apart, little noise within each
        a = rng.normal(0.0, 0.01, 400)
        pairs.append((a, a + shift))
    e = pooled_effect(pairs, draws=500)
    assert e.se == pytest.approx(e.sd_seed / math.sqrt(3)) and e.sd_seed == pytest.approx(1.0, abs=1e-3)


def test_seeds_to_detect_is_the_t_test_count_when_nothing_is_shared():
    for diff, sd in ((0.02, 0.01), (0.05, 0.04), (1.0, 2.5)):
        assert seeds_to_detect(diff, sd * sd, 0.0, 1000, start=2) == seeds_for_power(diff, sd)
    # a variance the shared units keep that alone is too large: no count of seeds is enough
    assert seeds_to_detect(0.01, 1e-6, 1e-4, 1000, start=2) is None
    assert seeds_to_detect(0.0, 1e-4, 0.0, 1000, start=2) is None


def test_the_crossed_split_calls_the_seed_by_example_interaction_shrinkable():
    """Outcomes with no per-example effect at all (every seed's disagreements fall on other examples): what
    the shared examples keep is ~0, and the interaction goes with the seeds."""
    rng = np.random.default_rng(13)
    pairs = [(np.ones(2000, bool), rng.random(2000) > 0.02) for _ in range(3)]
    e = pooled_effect(pairs, shared_units=True)
    assert e.var_units < 0.2 * e.var_seeds / 3
    assert seeds_to_detect(e.diff, e.var_seeds, e.var_units, e.n, start=4) is not None


def test_one_unit_per_seed_does_not_divide_by_zero():
    one = (np.array([True]), np.array([True]))
    e = pooled_effect([one, one], shared_units=True)
    assert e.diff == 0 and e.lo < 0 < e.hi and math.isfinite(e.df) is False
