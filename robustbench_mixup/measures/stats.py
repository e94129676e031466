"""Intervals, tests and sample sizes for the suite's measurements.

Every comparison here is paired: ERM ("a") and mixup ("b") are scored on the SAME test examples, and the
quantity reported is the difference b − a. Training seeds add a second level of variation: `pooled_effect`
combines several seeds' paired differences into one effect whose interval accounts for both levels. `holm`
adjusts a family of p-values, and the `*_for_power` functions say how many examples, units or seeds would
detect an observed difference.

numpy and the standard library only: the HTML report imports this module and must not load torch. Inputs
may still be CPU torch tensors (they convert with `np.asarray`). Every random draw comes from an explicit seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

# Bytes a vectorized bootstrap or randomization step may hold at once; larger jobs are split into chunks.
_CHUNK_BYTES = 200_000_000


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a binomial proportion (sound at 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class PairedDifference:
    """mean(b) − mean(a) for two per-example outcomes on the SAME examples, with its interval and the
    exact McNemar test on the discordant examples."""

    diff: float
    lo: float
    hi: float
    p_value: float
    n: int
    n01: int  # a wrong, b right
    n10: int  # a right, b wrong


def mcnemar_p(n01: int, n10: int) -> float:
    """Two-sided exact McNemar test: under "no difference" each discordant example is a fair coin, so
    the smaller count is Binomial(n01 + n10, 1/2); 1.0 when there are no discordant examples."""
    m, k = n01 + n10, min(n01, n10)
    if m == 0:
        return 1.0
    term = total = 1  # C(m, 0), then C(m, i) from C(m, i − 1): exact integers, no underflow for large m
    for i in range(1, k + 1):
        term = term * (m - i + 1) // i
        total += term
    return min(1.0, 2 * total / 2**m)


def _as_array(x: Any) -> np.ndarray:
    """`x` as a numpy array; a torch tensor is detached and moved to the CPU first (without importing torch)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
    return np.asarray(x)


def _bool_pair(correct_a: Any, correct_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_array(correct_a), _as_array(correct_b)
    if a.dtype != np.bool_ or b.dtype != np.bool_ or a.ndim != 1 or a.shape != b.shape:
        raise TypeError("correct_a and correct_b must be bool arrays or tensors of the same shape (N,)")
    return a, b


def _float_pair(values_a: Any, values_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_array(values_a), _as_array(values_b)
    for v in (a, b):
        if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
            raise TypeError(f"values_a and values_b must be real numbers, got dtype {v.dtype}")
    if a.ndim != 1 or a.shape != b.shape:
        raise TypeError(f"values_a and values_b must have the same shape (N,), got {a.shape} and {b.shape}")
    a, b = a.astype(np.float64), b.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("values_a and values_b must be finite")
    return a, b


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def _newcombe(n11: int, n10: int, n01: int, n00: int, confidence: float) -> tuple[float, float, float]:
    """diff = pb − pa and its interval from the 2×2 table of paired outcomes (Newcombe 1998, method 10)."""
    n = n11 + n10 + n01 + n00
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    pa, pb = (n11 + n10) / n, (n11 + n01) / n
    l1, u1 = wilson_interval(n11 + n10, n, z)
    l2, u2 = wilson_interval(n11 + n01, n, z)
    denominator = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    # Newcombe's continuity-corrected correlation: without it, a table with no discordant example has
    # φ = 1 and an interval of width 0, however few the examples.
    cross = n11 * n00 - n10 * n01
    corrected = cross - n / 2 if cross > n / 2 else 0.0 if cross >= 0 else cross
    phi = corrected / math.sqrt(denominator) if denominator else 0.0
    below = math.sqrt(max(0.0, (pb - l2) ** 2 - 2 * phi * (pb - l2) * (u1 - pa) + (u1 - pa) ** 2))
    above = math.sqrt(max(0.0, (u2 - pb) ** 2 - 2 * phi * (u2 - pb) * (pa - l1) + (pa - l1) ** 2))
    diff = pb - pa
    return diff, max(-1.0, diff - below), min(1.0, diff + above)


def paired_difference(correct_a: Any, correct_b: Any, *, confidence: float = 0.95) -> PairedDifference:
    """The difference of two proportions measured on the same examples (Newcombe 1998, method 10: the
    two Wilson intervals combined with the correlation of the pairs), and the exact McNemar p-value.

    Pairing is what makes a small difference detectable: the examples both models get right or both
    get wrong carry no information about which is better, and only the discordant ones are tested.
    `correct_a`, `correct_b`: bool arrays (or CPU torch tensors) of shape (N,).
    """
    a, b = _bool_pair(correct_a, correct_b)
    _check_confidence(confidence)
    n = len(a)
    if n == 0:
        return PairedDifference(0.0, -1.0, 1.0, 1.0, 0, 0, 0)
    n11, n10, n01 = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    diff, lo, hi = _newcombe(n11, n10, n01, n - n11 - n10 - n01, confidence)
    return PairedDifference(diff, lo, hi, mcnemar_p(n01, n10), n, n01, n10)


# Student's t distribution, for the few-seed intervals (scipy is not a dependency of the package).


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction 1 + d1/(1 + d2/(1 + …)) of the regularized incomplete beta function, by the
    modified Lentz method; it converges quickly for x < (a + 1) / (a + b + 2)."""
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for j in range(1, 1000):
        m = j // 2
        if j % 2:
            coefficient = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            coefficient = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + coefficient * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + coefficient / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return f


def _incomplete_beta(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b), with y = 1 − x passed in separately so that x close to 1 loses no precision."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _incomplete_beta(b, a, y, x)
    log_front = a * math.log(x) + b * math.log(y) - math.log(a) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    return math.exp(log_front) / _beta_fraction(a, b, x)


def _t_two_sided(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's T with `df` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2)."""
    if math.isinf(t):
        return 0.0
    t2 = t * t
    return _incomplete_beta(df / 2, 0.5, df / (df + t2), t2 / (df + t2))


def _t_pdf(t: float, df: float) -> float:
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))


def student_t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's T with `df` > 0 degrees of freedom."""
    if not df > 0:
        raise ValueError(f"df must be positive, got {df}")
    half_tail = _t_two_sided(t, df) / 2
    return 1.0 - half_tail if t > 0 else half_tail


def student_t_quantile(p: float, df: float) -> float:
    """The t with P(T ≤ t) = p for Student's T with `df` > 0 degrees of freedom.

    Solved in the upper tail (P(T ≥ t) = min(p, 1 − p)), which keeps its precision for p near 0 or 1,
    by Newton's method from the normal quantile, kept inside a bracket that bisection falls back on.
    """
    if not df > 0:
        raise ValueError(f"df must be positive, got {df}")
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    q = min(p, 1 - p)  # the upper-tail probability to reach
    lo, hi = 0.0, max(1.0, NormalDist().inv_cdf(1 - q))
    while _t_two_sided(hi, df) / 2 > q:  # the t quantile lies beyond the normal one: widen until bracketed
        lo, hi = hi, 2 * hi
    t = (lo + hi) / 2
    for _ in range(200):
        excess = _t_two_sided(t, df) / 2 - q  # decreasing in t
        if excess > 0:
            lo = t
        else:
            hi = t
        step = excess / _t_pdf(t, df)
        newton = t + step
        t_next = newton if lo < newton < hi else (lo + hi) / 2
        if abs(t_next - t) <= 1e-14 * max(1.0, abs(t)) or hi - lo <= 1e-14 * max(1.0, hi):
            t = t_next
            break
        t = t_next
    return t if p > 0.5 else -t


def t_quantile(p: float, df: float) -> float:
    """`student_t_quantile`, and the normal quantile for infinite `df`."""
    return NormalDist().inv_cdf(p) if math.isinf(df) else student_t_quantile(p, df)


def t_upper_tail(t: float, df: float) -> float:
    """P(T ≥ t) for Student's T with `df` degrees of freedom (normal for infinite `df`), accurate in the far tail."""
    if math.isinf(df):
        return NormalDist().cdf(-t)
    return _t_two_sided(t, df) / 2 if t > 0 else 1 - _t_two_sided(t, df) / 2


def _t_interval(estimate: float, se: float, df: float, confidence: float) -> tuple[float, float, float]:
    """(lo, hi, two-sided p of estimate = 0) for an estimate with standard error `se` and `df` degrees of freedom."""
    half = t_quantile((1 + confidence) / 2, df) * se
    if se == 0:  # no spread at all: the estimate is exact
        return estimate, estimate, 1.0 if estimate == 0 else 0.0
    return estimate - half, estimate + half, min(1.0, 2 * t_upper_tail(abs(estimate) / se, df))


# Continuous paired outcomes.


@dataclass(frozen=True)
class MeanDifference:
    """mean(b − a) over pairs of real-valued outcomes (the same units measured under both methods), with a
    bootstrap interval and a sign-flip randomization p-value."""

    diff: float
    lo: float
    hi: float
    p_value: float
    n: int
    sd: float  # of the per-pair differences (nan for a single pair)


def _rows_per_chunk(width: int, bytes_per_cell: int) -> int:
    return max(1, _CHUNK_BYTES // (max(1, width) * bytes_per_cell))


def _bootstrap_means(d: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """`draws` means of `d` resampled with replacement, in chunks of bounded memory."""
    n = len(d)
    index = np.int32 if n < 2**31 else np.int64  # 32-bit indices draw and gather faster
    out = np.empty(draws)
    rows = _rows_per_chunk(n, 16)  # an index and a gathered value per cell
    for start in range(0, draws, rows):
        stop = min(draws, start + rows)
        out[start:stop] = d[rng.integers(0, n, size=(stop - start, n), dtype=index)].mean(axis=1)
    return out


def _sign_flip_p(d: np.ndarray, draws: int, rng: np.random.Generator) -> float:
    """Two-sided randomization p-value of mean(d) = 0: under the null each difference is as likely to have
    the opposite sign, so flipping signs at random draws from the null distribution of the mean."""
    total = float(d.sum())
    # A flipped sum equal to the observed one in exact arithmetic may differ in the last bits: such ties count.
    tolerance = 1e-9 * float(np.abs(d).sum())
    n = len(d)
    rows = _rows_per_chunk(n, 10)  # a flip as a bit, a byte and a float per cell
    extreme = 0
    for start in range(0, draws, rows):
        random_bytes = rng.integers(0, 256, size=(min(draws, start + rows) - start, (n + 7) // 8), dtype=np.uint8)
        flips = np.unpackbits(random_bytes, axis=1, count=n).astype(np.float64)  # fair coins, 8 to a random byte
        flipped = total - 2 * (flips @ d)  # the sum with the flipped differences' signs reversed
        extreme += int((np.abs(flipped) >= abs(total) - tolerance).sum())
    return (1 + extreme) / (1 + draws)


def paired_mean_difference(
    values_a: Any, values_b: Any, *, confidence: float = 0.95, draws: int = 4000, seed: int = 0
) -> MeanDifference:
    """mean(b − a) for two real-valued outcomes measured on the same N units (e.g. per-pair gradient norms
    of two models at the same pairs), with a percentile bootstrap interval over the pairs and the p-value of
    a sign-flip randomization test, p = (1 + #{|mean*| ≥ |mean|}) / (1 + draws).

    Neither needs the differences to be normal; both draw `draws` times from `np.random.default_rng(seed)`.
    """
    a, b = _float_pair(values_a, values_b)
    _check_confidence(confidence)
    if len(a) == 0:
        raise ValueError("no pairs to compare")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    d = b - a
    rng = np.random.default_rng(seed)
    means = _bootstrap_means(d, draws, rng)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    diff = float(d.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
    return MeanDifference(diff, min(float(lo), diff), max(float(hi), diff), _sign_flip_p(d, draws, rng), len(d), sd)


# Several training seeds.


@dataclass(frozen=True)
class Effect:
    """The difference b − a pooled over training seeds: the mean over seeds of each seed's paired
    difference, its interval and two-sided p-value, and what the power calculations need."""

    diff: float
    lo: float
    hi: float
    p_value: float
    seeds: int
    n: int  # units per seed (the smallest, when seeds differ)
    method: str  # in a few words, for the report
    per_seed: tuple[float, ...]  # each seed's paired difference
    sd_unit: float  # sd of the per-unit differences within a seed, pooled over seeds
    sd_seed: float | None  # sd of the per-seed differences; None with one seed
    n01: int | None  # binary outcomes: a wrong, b right, summed over seeds; None for real values
    n10: int | None  # a right, b wrong, likewise
    se: float = math.nan  # the standard error the interval uses (from its width, for one seed)
    df: float = math.inf  # its degrees of freedom (infinite: a normal-theory interval)
    # se² ≈ var_seeds / seeds + var_units: the part more seeds shrink, and the part they do not (the variation
    # of the test examples every seed shares; 0 when each seed has its own units)
    var_seeds: float = math.nan
    var_units: float = math.nan


def _pooled_sd(diffs: Sequence[np.ndarray]) -> float:
    """The within-seed sd of the per-unit differences, pooled over seeds (nan with one unit per seed)."""
    df = sum(len(d) - 1 for d in diffs)
    if df == 0:
        return math.nan
    return math.sqrt(sum(float(((d - d.mean()) ** 2).sum()) for d in diffs) / df)


def _hierarchical_draws(
    resamplers: Sequence[Callable[[int, np.random.Generator], np.ndarray]], draws: int, rng: np.random.Generator
) -> np.ndarray:
    """`draws` bootstrap replicates of the mean over seeds: each replicate picks S seeds with replacement,
    then resamples the units of each pick independently; `resamplers[s](m, rng)` returns m such
    resampled differences of seed s."""
    s = len(resamplers)
    picks = rng.integers(0, s, size=(draws, s))
    values = np.empty((draws, s))
    for seed_index, resample in enumerate(resamplers):
        chosen = picks == seed_index
        values[chosen] = resample(int(chosen.sum()), rng)
    return values.mean(axis=1)


def _binary_resampler(n01: int, n10: int, n: int) -> Callable[[int, np.random.Generator], np.ndarray]:
    """Resampling n paired binary outcomes only changes the three counts: (n01, n10, concordant) ~ multinomial.
    Half an example is added to each discordant count, so a seed without a discordant example still varies
    (the resamples of an observed 0 would otherwise all be 0)."""
    probabilities = [(n01 + 0.5) / (n + 1), (n10 + 0.5) / (n + 1), max(0.0, 1.0 - (n01 + n10 + 1) / (n + 1))]

    def resample(m: int, rng: np.random.Generator) -> np.ndarray:
        counts = rng.multinomial(n, probabilities, size=m)
        return (counts[:, 0] - counts[:, 1]) / n

    return resample


def _continuous_resampler(d: np.ndarray) -> Callable[[int, np.random.Generator], np.ndarray]:
    return lambda m, rng: _bootstrap_means(d, m, rng)


def _crossed(diffs: Sequence[np.ndarray], binary: bool) -> tuple[float, float, float, float, float]:
    """(estimate, se, df, var_seeds, var_units) of the mean over seeds when every seed measured the SAME units
    (the same test images): the units' own variation is shared by all seeds and does not average out over
    them.

    With the two-way table of differences d (seeds × units) and its mean squares MS_seeds, MS_units and MS_rest,
    se² = (MS_seeds + MS_units)/(S·N) = sd_seed²/S + var_i(d̄_i)/N, d̄_i being unit i's difference averaged over
    the seeds, with Welch-Satterthwaite degrees of freedom (the two mean squares are independent, on S − 1 and
    N − 1 df). It counts the seed × unit interaction twice, so it is conservative (up to √2 too wide when the
    interaction dominates, as it does for right/wrong outcomes); the ANOVA estimate without the double count
    came out too narrow in simulation. For binary outcomes the units' term is at least that of one discordant
    unit each way.

    For the power sentence, the variance of the mean with S' seeds is split into what more seeds shrink and
    what they do not: var_seeds/S' + var_units, var_seeds = σ²_seeds + σ²_rest/N and var_units = σ²_units/N,
    from the usual ANOVA estimates (floored at 0)."""
    d = np.stack(diffs).astype(np.float64)  # (S, N)
    s, n = d.shape
    per_seed, per_unit = d.mean(axis=1), d.mean(axis=0)
    ms_seeds = n * float(per_seed.var(ddof=1))
    ms_units = s * float(per_unit.var(ddof=1)) if n > 1 else 0.0
    residual = d - per_seed[:, None] - per_unit[None, :] + d.mean()
    ms_rest = float((residual**2).sum()) / ((s - 1) * (n - 1)) if n > 1 else 0.0
    a, b = ms_seeds / (s * n), ms_units / (s * n)
    if binary:
        b = max(b, 2 / (n * n))
    se2 = a + b
    denominator = a * a / (s - 1) + (b * b / (n - 1) if n > 1 else 0.0)
    df = se2 * se2 / denominator if denominator > 0 else math.inf
    var_seeds = max(0.0, (ms_seeds - ms_rest) / n) + ms_rest / n
    var_units = max(0.0, (ms_units - ms_rest) / s) / n
    return float(per_seed.mean()), math.sqrt(se2), df, var_seeds, var_units


def pooled_effect(
    pairs: Sequence[tuple[Any, Any]],
    *,
    confidence: float = 0.95,
    draws: int = 4000,
    seed: int = 0,
    shared_units: bool = False,
) -> Effect:
    """The effect of b over a across training seeds: `pairs[s]` holds the per-unit outcomes of both methods
    for seed s (the same units within a seed; the number of units may differ between seeds), bool arrays for
    right/wrong outcomes or real arrays for measured values. The effect is the mean over seeds of each seed's
    mean(b) − mean(a).

    - One seed: `paired_difference` (bool) or `paired_mean_difference` (real); seed-to-seed variation is then
      not part of the interval.
    - 2 to 4 seeds: a hierarchical bootstrap (seeds with replacement, then units within each picked seed) gives
      the standard error SE, and the interval is estimate ± t·SE with the t quantile of S − 1 degrees of
      freedom (and the p-value from the same t). A percentile interval from so few seeds is far too narrow
      when the seeds differ more than the units' sampling noise does: the replicates only ever recombine the
      S observed seeds, so with 3 seeds they scarcely leave the range of 3 values, which contains the
      population mean just 75% of the time. The t quantile with S − 1 degrees of freedom widens the interval
      for the few seeds that estimated the spread.
    - 5 seeds or more: the t interval over the per-seed estimates, SE = sd/√S with S − 1 degrees of freedom.
    - `shared_units` (every seed measured the same units, as every run of a group is scored on the same test
      images), 2 seeds or more: the crossed design of `_crossed`; the two designs above assume each seed drew
      its own units, and with shared units they leave out the test set's own variation.

    Random draws (bootstrap, sign flips) come from `np.random.default_rng(seed)`.
    """
    _check_confidence(confidence)
    if draws < 2:
        raise ValueError(f"draws must be at least 2, got {draws}")
    if not pairs:
        raise ValueError("no seeds to pool")
    arrays = [(_as_array(a), _as_array(b)) for a, b in pairs]
    binary = all(a.dtype == np.bool_ and b.dtype == np.bool_ for a, b in arrays)
    if binary:
        checked = [_bool_pair(a, b) for a, b in arrays]
        diffs = [b.astype(np.int8) - a.astype(np.int8) for a, b in checked]
    else:
        if any(a.dtype == np.bool_ or b.dtype == np.bool_ for a, b in arrays):
            raise TypeError("every seed's outcomes must be all bool (right/wrong) or all real values, not a mix")
        checked = [_float_pair(a, b) for a, b in arrays]
        diffs = [b - a for a, b in checked]
    if any(len(d) == 0 for d in diffs):
        raise ValueError("every seed needs at least one unit")
    s, n = len(diffs), min(len(d) for d in diffs)
    sd_unit = _pooled_sd(diffs)
    n01 = sum(int((d == 1).sum()) for d in diffs) if binary else None
    n10 = sum(int((d == -1).sum()) for d in diffs) if binary else None
    if s == 1:
        if binary:
            one = paired_difference(*checked[0], confidence=confidence)
            method = "paired, Newcombe interval, exact McNemar"
        else:
            one = paired_mean_difference(*checked[0], confidence=confidence, draws=draws, seed=seed)
            method = "paired bootstrap over pairs, sign-flip test"
        se = (one.hi - one.lo) / (2 * NormalDist().inv_cdf((1 + confidence) / 2))
        return Effect(one.diff, one.lo, one.hi, one.p_value, 1, n, method, (one.diff,), sd_unit, None, n01, n10,
                      se=se, df=math.inf, var_seeds=math.nan, var_units=se * se)  # fmt: skip
    per_seed = np.array([float(d.mean()) for d in diffs])
    estimate, sd_seed = float(per_seed.mean()), float(per_seed.std(ddof=1))
    per = tuple(float(v) for v in per_seed)
    if shared_units and len({len(d) for d in diffs}) == 1:
        estimate, se, df, var_seeds, var_units = _crossed(diffs, binary)
        lo, hi, p = _t_interval(estimate, se, df, confidence)
        method = f"{s} seeds × the same {n} units (crossed), t with {df:.0f} df"
        return Effect(estimate, lo, hi, p, s, n, method, per, sd_unit, sd_seed, n01, n10, se=se, df=df,
                      var_seeds=var_seeds, var_units=var_units)  # fmt: skip
    if s < 5:
        if binary:
            resamplers = [_binary_resampler(int((d == 1).sum()), int((d == -1).sum()), len(d)) for d in diffs]
        else:
            resamplers = [_continuous_resampler(d) for d in diffs]
        se = float(_hierarchical_draws(resamplers, draws, np.random.default_rng(seed)).std(ddof=1))
        # resampling S seeds with replacement shrinks their spread by (S − 1)/S: the t interval's own SE is a floor
        se = max(se, sd_seed / math.sqrt(s))
        method = f"hierarchical bootstrap over {s} seeds, t with {s - 1} df"
    else:
        se = sd_seed / math.sqrt(s)
        method = f"t over {s} seeds"
    lo, hi, p = _t_interval(estimate, se, s - 1, confidence)
    return Effect(estimate, lo, hi, p, s, n, method, per, sd_unit, sd_seed, n01, n10, se=se, df=s - 1,
                  var_seeds=se * se * s, var_units=0.0)  # fmt: skip


# Multiple comparisons.


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: rejecting those ≤ α keeps the chance of any
    false rejection in the family at most α, without assuming the tests are independent."""
    p = [float(v) for v in p_values]
    if any(not 0 <= v <= 1 for v in p):
        raise ValueError(f"p-values must lie in [0, 1], got {p}")
    m = len(p)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p[i])):
        running = max(running, min(1.0, (m - rank) * p[i]))  # never below a smaller p-value's adjustment
        adjusted[i] = running
    return adjusted


# Sample sizes that would detect the observed difference.


def _z_sum(power: float, alpha: float) -> tuple[float, float]:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1), got alpha={alpha}, power={power}")
    unit = NormalDist()
    return unit.inv_cdf(1 - alpha / 2), unit.inv_cdf(power)


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)  # 40.0000000001 from rounding is 40


def examples_for_power(n01: int, n10: int, n: int, *, power: float = 0.8, alpha: float = 0.05) -> int | None:
    """Paired examples a two-sided McNemar test at level `alpha` needs to detect, with probability `power`,
    a difference like the observed one (discordant proportions n01/n and n10/n), by Connor's (1987)
    approximation n = (z_{1−α/2}·√ψ + z_power·√(ψ − δ²))² / δ² with ψ = p01 + p10 and δ = p01 − p10.
    None when the observed difference is 0: no number of examples detects it."""
    if n <= 0 or n01 < 0 or n10 < 0 or n01 + n10 > n:
        raise ValueError(f"need 0 ≤ n01, n10 and n01 + n10 ≤ n > 0, got n01={n01}, n10={n10}, n={n}")
    z_alpha, z_power = _z_sum(power, alpha)
    if n01 == n10:
        return None
    psi, delta = (n01 + n10) / n, (n01 - n10) / n
    root = z_alpha * math.sqrt(psi) + z_power * math.sqrt(max(0.0, psi - delta * delta))
    return max(1, _ceil(root * root / (delta * delta)))


def units_for_power(diff: float, sd: float, *, power: float = 0.8, alpha: float = 0.05) -> int | None:
    """Pairs a two-sided test of a paired mean difference at level `alpha` needs to detect `diff` with
    probability `power`, when the per-pair differences have standard deviation `sd` (normal approximation,
    ((z_{1−α/2} + z_power)·sd/diff)²). None when `diff` is 0."""
    if not sd >= 0:
        raise ValueError(f"sd must be ≥ 0, got {sd}")
    z_alpha, z_power = _z_sum(power, alpha)
    if diff == 0:
        return None
    return max(1, _ceil(((z_alpha + z_power) * sd / diff) ** 2))


def seeds_for_power(
    diff: float, sd_seed: float | None, *, power: float = 0.8, alpha: float = 0.05, max_seeds: int = 1000
) -> int | None:
    """Training seeds a two-sided t test over seeds at level `alpha` needs to detect `diff` with probability
    `power`, when the per-seed differences have standard deviation `sd_seed`: the smallest S ≥ 2 with
    S ≥ ((t_{S−1, 1−α/2} + t_{S−1, power})·sd_seed/diff)². None when `diff` is 0 or `sd_seed` unknown (one
    seed); `max_seeds` when even that many are not enough."""
    if max_seeds < 2:
        raise ValueError(f"max_seeds must be at least 2, got {max_seeds}")
    _z_sum(power, alpha)
    if sd_seed is None or diff == 0:
        return None
    if not sd_seed >= 0:
        raise ValueError(f"sd_seed must be ≥ 0, got {sd_seed}")
    found = seeds_to_detect(diff, sd_seed * sd_seed, 0.0, 2, start=2, power=power, alpha=alpha, max_seeds=max_seeds)
    return max_seeds if found is None else found


def seeds_to_detect(
    diff: float, var_seeds: float, var_units: float, units: int, *, start: int, power: float = 0.8,
    alpha: float = 0.05, max_seeds: int = 1000,
) -> int | None:  # fmt: skip
    """The fewest seeds S' ≥ `start` whose mean has variance var_seeds/S' + var_units small enough for a two-sided
    t test at level `alpha` (Welch-Satterthwaite df: S' − 1 for the seeds' part, `units` − 1 for the rest) to
    detect `diff` with probability `power`: (t_{1−α/2} + t_power)²·variance ≤ diff². None when no count up to
    `max_seeds` does (for instance when var_units alone is too large: more units are needed, not seeds)."""
    _z_sum(power, alpha)
    if diff == 0 or not (math.isfinite(var_seeds) and math.isfinite(var_units)):
        return None

    def enough(s: int) -> bool:  # monotone in s: the variance shrinks and the t quantiles with it
        a, b = var_seeds / s, var_units
        variance = a + b
        denominator = a * a / (s - 1) + (b * b / (units - 1) if units > 1 else 0.0)
        df = variance * variance / denominator if denominator > 0 else math.inf
        return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) ** 2 * variance <= diff * diff

    lo, hi = max(start, 2) - 1, max_seeds  # bisection: lo is below every candidate
    if hi <= lo or not enough(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid
    return hi
