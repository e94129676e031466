"""The rule that turns a measurement into a verdict on one of the paper's claims.

Each claim compares mixup with ERM on one quantity, each measured with a 95% interval:

- a claim that mixup makes a quantity LOWER (or HIGHER) is *reproduced* when mixup's interval lies
  entirely on the claimed side of ERM's, *not reproduced* when it lies entirely on the other side, and
  *inconclusive* when the two intervals overlap;
- a claim that mixup is NO WORSE (clean accuracy) is *not reproduced* only when mixup's interval lies
  entirely on the worse side of ERM's, and *reproduced* otherwise.

Nothing is tuned to fit: the verdict follows from the numbers alone, and `RULE` states it in the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["lower", "higher", "no_worse_higher"]

RULE = (
    "A claim that mixup lowers (raises) a quantity is reproduced when mixup's 95% interval lies entirely below "
    "(above) ERM's, not reproduced when it lies entirely on the other side, and inconclusive when the intervals "
    "overlap. A claim that mixup is no worse (clean accuracy) is not reproduced only when mixup's interval lies "
    "entirely below ERM's."
)


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not self.lo <= self.value <= self.hi:
            raise ValueError(f"an estimate must lie in its interval: {self.lo} ≤ {self.value} ≤ {self.hi}")


def verdict(erm: Estimate, mixup: Estimate, direction: Direction) -> str:
    """'reproduced', 'not reproduced' or 'inconclusive' for the claim that mixup moves the quantity `direction`."""
    below = mixup.hi < erm.lo  # mixup entirely below ERM
    above = mixup.lo > erm.hi  # mixup entirely above ERM
    if direction == "lower":
        return "reproduced" if below else "not reproduced" if above else "inconclusive"
    if direction == "higher":
        return "reproduced" if above else "not reproduced" if below else "inconclusive"
    if direction == "no_worse_higher":
        return "not reproduced" if below else "reproduced"
    raise ValueError(f"direction must be lower, higher or no_worse_higher, got {direction!r}")


@dataclass
class Claim:
    claim: str
    paper: str  # the paper's figure, as text
    erm: Estimate | None
    mixup: Estimate | None
    where: str  # at which setting the measurement was taken
    verdict: str  # reproduced | not reproduced | inconclusive | not measured
    unit: str = "%"
    command: str = ""  # what fills a claim that is not measured


def _wilson(p: float, n: int) -> Estimate:
    from .stats import wilson_interval

    lo, hi = wilson_interval(round(p * n), n)
    return Estimate(p, min(lo, p), max(hi, p))


def _error(row: dict) -> Estimate:
    """Top-1 error with its interval, from an attack_results row (accuracy interval flipped)."""
    return Estimate(1 - row["top1"], 1 - row["top1_hi"], 1 - row["top1_lo"])


def _attack_claim(rows: list[dict], attack: str, mode: str) -> tuple[Estimate | None, Estimate | None, str]:
    chosen = [r for r in rows if r["attack"] == attack and r["mode"] == mode and r["eps"] > 0]
    if not chosen:
        return None, None, ""
    eps = max(r["eps"] for r in chosen)  # the strongest attack evaluated, as the paper reports one ε
    at = {r["model"]: r for r in chosen if r["eps"] == eps and r["backend"] == "native"}
    if "erm" not in at or "mixup" not in at:
        return None, None, ""
    return _error(at["erm"]), _error(at["mixup"]), f"ε = {eps:.4g}, n = {at['erm']['n']}"


def assess(
    *,
    final_test_acc: dict[str, float],
    n_test: int,
    attack_rows: list[dict],
    probe_rows: list[dict],
    sweep_jobs: list[dict],
    n_train: int | None,
) -> list[Claim]:
    """One `Claim` per claim of the paper, from a run's stored results (nothing is recomputed)."""
    from . import paper

    claims: list[Claim] = []

    def add(claim: str, paper_text: str, erm: Estimate | None, mix: Estimate | None, where: str,
            direction: Direction, command: str) -> Claim:  # fmt: skip
        v = verdict(erm, mix, direction) if erm is not None and mix is not None else "not measured"
        c = Claim(claim, paper_text, erm, mix, where, v, command=command)
        claims.append(c)
        return c

    t3w, t3b = paper.table3("white", "top1", "ERM"), paper.table3("black", "top1", "ERM")
    m3w, m3b = paper.table3("white", "top1", "mixup"), paper.table3("black", "top1", "mixup")
    erm, mix, where = _attack_claim(attack_rows, "fgsm", "white")
    add("mixup lowers white-box FGSM error", f"top-1 error {t3w.fgsm} → {m3w.fgsm} (ImageNet, ε = 4/255)",
        erm, mix, where, "lower", "robust-eval fgsm --eps 0 0.01 0.03 0.1")  # fmt: skip
    for attack, label in (("fgsm", "FGSM"), ("ifgsm", "I-FGSM")):
        erm, mix, where = _attack_claim(attack_rows, attack, "black")
        before, after = (t3b.fgsm, m3b.fgsm) if attack == "fgsm" else (t3b.ifgsm, m3b.ifgsm)
        add(f"mixup lowers black-box {label} error", f"top-1 error {before} → {after} (ImageNet, ε = 4/255)",
            erm, mix, where, "lower", f"robust-eval {attack} --eps 0 0.01 0.03 0.1")  # fmt: skip

    probe_cmd = "robust-eval probe"
    if probe_rows:
        pairs = max(r["pairs"] for r in probe_rows)
        rows = [r for r in probe_rows if r["pairs"] == pairs and r["split"] == "train" and r["same_class"] == "exclude"]
        rows = rows or [r for r in probe_rows if r["pairs"] == pairs]
        mid = min({r["lam"] for r in rows}, key=lambda lam: abs(lam - 0.5))
        at = {r["model"]: r for r in rows if r["lam"] == mid}
        where = f"λ = {mid:.2f}, {pairs} pairs"
        add("mixup lowers the miss rate between training pairs", paper.FIGURE2["miss_rate"],
            Estimate(at["erm"]["miss_rate"], at["erm"]["miss_lo"], at["erm"]["miss_hi"]),
            Estimate(at["mixup"]["miss_rate"], at["mixup"]["miss_lo"], at["mixup"]["miss_hi"]),
            where, "lower", probe_cmd)  # fmt: skip
        c = add("mixup lowers the input-gradient norm between training pairs", paper.FIGURE2["grad_norm"],
                Estimate(at["erm"]["grad_norm"], at["erm"]["norm_lo"], at["erm"]["norm_hi"]),
                Estimate(at["mixup"]["grad_norm"], at["mixup"]["norm_lo"], at["mixup"]["norm_hi"]),
                where, "lower", probe_cmd)  # fmt: skip
        c.unit = ""
    else:
        add("mixup lowers the miss rate between training pairs", paper.FIGURE2["miss_rate"], None, None, "",
            "lower", probe_cmd)  # fmt: skip
        c = add("mixup lowers the input-gradient norm between training pairs", paper.FIGURE2["grad_norm"], None,
                None, "", "lower", probe_cmd)  # fmt: skip
        c.unit = ""

    erm = mix = None
    where = ""
    done = [j for j in sweep_jobs if j.get("train_corrupted_err") is not None and j["dropout"] == 0]
    if done and n_train:
        noise = min({j["noise"] for j in done}, key=lambda n: abs(n - 0.5))
        at_noise = [j for j in done if j["noise"] == noise]
        ermj = [j for j in at_noise if j["alpha"] == 0]
        alpha = max((j["alpha"] for j in at_noise), default=0)
        mixj = [j for j in at_noise if j["alpha"] == alpha and alpha > 0]
        if ermj and mixj:
            n = round(noise * n_train)
            erm = _wilson(sum(j["train_corrupted_err"] for j in ermj) / len(ermj), n * len(ermj))
            mix = _wilson(sum(j["train_corrupted_err"] for j in mixj) / len(mixj), n * len(mixj))
            where = f"{noise:.0%} noise, mixup α = {alpha:g}, {len(ermj)} seed(s)"
    t2e = next(r for r in paper.TABLE2 if r.noise == 0.5 and r.method == "ERM")
    t2m = next(r for r in paper.TABLE2 if r.noise == 0.5 and r.method.startswith("mixup ("))
    add("mixup memorizes fewer corrupted labels (higher training error on them)",
        f"training error on corrupted labels {t2e.train_corrupted} → {t2m.train_corrupted} (CIFAR-10, 50% noise)",
        erm, mix, where, "higher",
        "robust-eval sweep corrupt --noise 0.5 --alpha 0 8 --epochs 60 --name RUN")  # fmt: skip

    before, after = paper.CIFAR_TEST_ERROR[("PreAct ResNet-18", "cifar10")]
    erm_acc, mix_acc = final_test_acc.get("erm"), final_test_acc.get("mixup")
    add("mixup's clean accuracy is no worse",
        f"test accuracy {100 - before:.1f} → {100 - after:.1f} (CIFAR-10, PreAct ResNet-18)",
        None if erm_acc is None else _wilson(erm_acc, n_test), None if mix_acc is None else _wilson(mix_acc, n_test),
        f"test split, n = {n_test}", "no_worse_higher", "robust-eval train")  # fmt: skip
    return claims
