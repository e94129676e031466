import json
import sqlite3

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_one_line_error, run_cli
from torch import nn

from robustbench_mixup.measures import interpolation as probes
from robustbench_mixup.measures.interpolation import (
    bootstrap_mean_interval,
    count_pairs,
    input_gradient_norm,
    interpolation_miss_rate,
    sample_pairs,
)
from robustbench_mixup.settings.config import TrainConfig
from robustbench_mixup.stages.train import train_run

LAM = torch.linspace(0, 1, 11, dtype=torch.float64)


def _pairs(p=300, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_i, x_j = torch.rand(p, 1, 4, 4, generator=g), torch.rand(p, 1, 4, 4, generator=g)
    y_i = torch.randint(0, k, (p,), generator=g)
    y_j = (y_i + torch.randint(1, k, (p,), generator=g)) % k  # a different class
    return x_i, y_i, x_j, y_j


def test_gradient_norm_of_a_linear_model_is_the_hand_computed_one():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    x_i, y_i, x_j, y_j = _pairs()
    W, b = lin[1].weight.detach().double(), lin[1].bias.detach().double()
    expected = []
    for lam in LAM:
        x = (lam * x_i + (1 - lam) * x_j).flatten(1).double()
        p = torch.softmax(x @ W.T + b, dim=1)
        t = lam * F.one_hot(y_i, 10) + (1 - lam) * F.one_hot(y_j, 10)
        expected.append(((p - t) @ W).norm(dim=1).mean())  # ∇ₓ CE = Wᵀ(p − t), per pair
    torch.testing.assert_close(
        input_gradient_norm(lin, x_i, y_i, x_j, y_j, LAM), torch.stack(expected), rtol=1e-4, atol=1e-6
    )


class Always(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        logits = torch.zeros(len(x), 10) + self.w * x.flatten(1).sum(1, keepdim=True)
        logits[:, self.c] += 1
        return logits


def test_a_constant_model_misses_exactly_the_pairs_without_its_class():
    x_i, y_i, x_j, y_j = _pairs()
    share = ((y_i != 3) & (y_j != 3)).double().mean()
    torch.testing.assert_close(interpolation_miss_rate(Always(3), x_i, y_i, x_j, y_j, LAM), share.repeat(len(LAM)))


def test_endpoints_are_the_predictions_on_the_pair_members():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))
    x_i, y_i, x_j, y_j = _pairs()
    rates = interpolation_miss_rate(model, x_i, y_i, x_j, y_j, LAM)
    with torch.no_grad():
        pi, pj = model(x_i).argmax(1), model(x_j).argmax(1)
    assert rates[-1] == ((pi != y_i) & (pi != y_j)).double().mean()  # λ = 1: x = x_i
    assert rates[0] == ((pj != y_i) & (pj != y_j)).double().mean()  # λ = 0: x = x_j


def test_results_do_not_depend_on_the_chunk_size(monkeypatch):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    args = _pairs()
    full = probes.probe_points(model, *args, LAM)
    monkeypatch.setattr(probes, "MAX_POINTS", {"cpu": 11 * 7})  # 7 pairs a chunk, a ragged last one
    small = probes.probe_points(model, *args, LAM)
    assert torch.equal(full[0], small[0])
    torch.testing.assert_close(full[1], small[1])


def test_the_model_is_left_as_it_was():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10), nn.Dropout(0.5)).train()
    input_gradient_norm(model, *_pairs(), LAM)
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize("n_pairs", [50, 4000])  # the sparse and the dense way of drawing
def test_sampled_pairs_are_distinct_deterministic_and_of_different_classes(n_pairs):
    labels = torch.arange(120) % 4
    i, j = sample_pairs(labels, n_pairs, same_class=False, generator=torch.Generator().manual_seed(0))
    assert len(i) == n_pairs and (labels[i] != labels[j]).all() and (i != j).all()
    keys = set(zip(torch.minimum(i, j).tolist(), torch.maximum(i, j).tolist(), strict=True))
    assert len(keys) == n_pairs
    again = sample_pairs(labels, n_pairs, same_class=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(i, again[0]) and torch.equal(j, again[1])


def test_pair_counts_and_the_limit():
    labels = torch.tensor([0, 0, 1, 1, 1])
    assert count_pairs(labels, same_class=True) == 10 and count_pairs(labels, same_class=False) == 6
    i, j = sample_pairs(labels, 6, same_class=False, generator=torch.Generator().manual_seed(0))
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == 6
    with pytest.raises(ValueError, match="at most 6 distinct"):
        sample_pairs(labels, 7, same_class=False, generator=torch.Generator().manual_seed(0))


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = torch.rand(3, 500, generator=torch.Generator().manual_seed(0))
    lo, hi = bootstrap_mean_interval(values, generator=torch.Generator().manual_seed(1))
    mean = values.double().mean(1)
    assert (lo < mean).all() and (mean < hi).all()
    # The standard error of a mean of 500 U(0, 1) is 0.0129: a 95% interval is about ±0.025.
    assert ((hi - lo) - 2 * 1.96 * (1 / 12 / 500) ** 0.5).abs().max() < 0.01
    lo2, hi2 = bootstrap_mean_interval(values, generator=torch.Generator().manual_seed(1))
    assert torch.equal(lo, lo2) and torch.equal(hi, hi2)


# --- the command -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe-cli")
    # α = 0: 'mixup' is a second ERM model with erm's weights, so same pairs => identical curves.
    train_run(TrainConfig(dataset="digits", model="mlp", epochs=2, batch_size=64, alpha=0.0), run="twin", out=root,
              device="cpu")  # fmt: skip
    return root


def test_probe_table_json_db_and_figure(capsys, out):
    code, stdout, err = run_cli(
        capsys, "probe", "--pairs", "300", "--lambdas", "5", "--out", str(out), "--device", "cpu"
    )
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == "probe of run twin: 300 train pairs of different classes, drawn from seed 0"
    assert lines[1].split()[3:] == ["λ", "0.00", "λ", "0.25", "λ", "0.50", "λ", "0.75", "λ", "1.00"]
    erm, mix = lines[2].split(), lines[3].split()
    assert (erm[0], mix[0], len(erm)) == ("erm", "mixup", 11)
    assert erm[1:] == mix[1:]  # twin models, same pairs: the same miss rate and gradient norm at every λ
    assert (out / "reports" / "twin" / "probe-train-exclude-300.png").stat().st_size > 10_000
    code, stdout, _ = run_cli(capsys, "probe", "--pairs", "300", "--lambdas", "5", "--out", str(out), "--json")
    record = json.loads(stdout)
    assert record["curves"]["erm"] == record["curves"]["mixup"] and record["lambdas"] == [0, 0.25, 0.5, 0.75, 1]
    with sqlite3.connect(out / "reports" / "results.sqlite") as con:
        n = con.execute("SELECT count(*) FROM probe_results WHERE run='twin' AND pairs=300").fetchone()[0]
        lo, mid, hi = con.execute(
            "SELECT miss_lo, miss_rate, miss_hi FROM probe_results WHERE lam=0.5 AND model='erm'"
        ).fetchone()
    assert n == 2 * 5 and lo <= mid <= hi


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--pairs", "0"], ["--pairs must be ≥ 1"]),
        (["--lambdas", "1"], ["--lambdas must be ≥ 2"]),
        (["--same-class", "maybe"], ["--same-class", "invalid choice"]),
        (["--run", "nope"], ["unknown run 'nope'"]),
        (
            ["--split", "test", "--pairs", "10000000"],
            ["--pairs 10000000 exceeds the", "distinct pairs of different classes"],
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, out, argv, needles):
    code, _, err = run_cli(capsys, "probe", *argv, "--out", str(out), "--device", "cpu")
    assert_one_line_error(code, err, *needles)


def test_probe_help_has_examples(capsys):
    code, stdout, _ = run_cli(capsys, "probe", "--help")
    assert code == 0 and "robust-eval probe --run" in stdout


def test_progress_counts_every_pair_once_per_model(monkeypatch):
    monkeypatch.setattr(probes, "MAX_POINTS", {"cpu": 11 * 64})
    seen = []
    probes.probe_points(nn.Sequential(nn.Flatten(), nn.Linear(16, 10)), *_pairs(), LAM, progress=seen.append)
    assert sum(seen) == 300 and max(seen) == 64


def test_a_probe_of_a_diverged_model_stores_nothing_and_says_so(tmp_path, capsys, monkeypatch):
    """Non-finite gradient norms are refused before anything is written: never a database the report rejects."""
    import sqlite3

    from helpers import assert_one_line_error, run_cli

    from robustbench_mixup.settings.config import TrainConfig
    from robustbench_mixup.settings.layout import Layout
    from robustbench_mixup.stages import probe as probing
    from robustbench_mixup.stages.train import train_run

    train_run(TrainConfig(dataset="digits", model="mlp", epochs=1, batch_size=64), run="d", out=tmp_path, device="cpu")
    real = probing.probe_points

    def diverged(*args, **kwargs):
        miss, norms = real(*args, **kwargs)
        return miss, norms * float("nan")

    monkeypatch.setattr(probing, "probe_points", diverged)
    argv = ("probe", "--pairs", "20", "--lambdas", "3", "--out", str(tmp_path), "--device", "cpu")
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "input-gradient norms of 'erm' in run 'd' are not finite")
    con = sqlite3.connect(Layout(tmp_path).database)
    assert con.execute("SELECT COUNT(*) FROM probe_results").fetchone()[0] == 0
    con.close()
