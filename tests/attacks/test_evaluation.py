"""`robustbench_mixup.evaluate`: any models, the suite's attacks, per-example outcomes, paired comparisons."""

import copy

import pytest
import torch
from torch import nn

import robustbench_mixup
from robustbench_mixup import stats
from robustbench_mixup.attacks import robust_accuracy
from robustbench_mixup.data import load_dataset


@pytest.fixture(scope="module")
def plain():
    """Two classifiers trained on digits by ten lines of plain PyTorch (not the suite's trainer): one on clean
    images, one on images with uniform noise, from the same start; and 300 test images."""
    data = load_dataset("digits")
    torch.manual_seed(0)
    first = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    models = {"clean": first, "noisy": copy.deepcopy(first)}
    g = torch.Generator().manual_seed(0)
    for name, model in models.items():
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(15):
            for i in range(0, len(data.train_labels), 64):
                x, y = data.train_images[i : i + 64], data.train_labels[i : i + 64]
                if name == "noisy":
                    x = (x + 0.2 * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1)
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        model.eval()
    return models, data.test_images[:300], data.test_labels[:300]


def test_outcomes_are_the_suites_own_on_the_same_examples(plain):
    models, x, y = plain
    result = robustbench_mixup.evaluate(models, x, y, attacks=("fgsm", "pgd"), eps=(0.05, 0.1), seed=3)
    assert result.models == ("clean", "noisy") and result.attacks == ("fgsm", "pgd") and result.n == 300
    for name, model in models.items():
        with torch.no_grad():
            assert torch.equal(result.outcomes[name, "clean", "clean", 0.0], model(x).argmax(1) == y)
        fgsm = robust_accuracy(model, x, y, [0.05, 0.1], attack="fgsm")
        for i, e in enumerate((0.05, 0.1)):
            assert result.outcomes[name, "fgsm", "white", e].double().mean() == fgsm[i]
            worst = result.outcomes[name, "worst", "white", e]  # robust only if no attack broke it
            assert torch.equal(
                worst, result.outcomes[name, "fgsm", "white", e] & result.outcomes[name, "pgd", "white", e]
            )
    frame = result.frame()
    assert len(frame) == 2 * (1 + 3 * 2)  # per model: clean, then fgsm, pgd and the worst case at each ε
    assert set(frame.columns) >= {"model", "attack", "mode", "eps", "accuracy", "lo", "hi", "n"}
    assert ((frame["lo"] <= frame["accuracy"]) & (frame["accuracy"] <= frame["hi"])).all() and (frame["n"] == 300).all()
    again = robustbench_mixup.evaluate(models, x, y, attacks=("fgsm", "pgd"), eps=(0.05, 0.1), seed=3)
    assert all(torch.equal(again.outcomes[k], v) for k, v in result.outcomes.items())  # random starts from the seed


def test_compare_is_the_paired_difference_of_the_stored_outcomes(plain):
    models, x, y = plain
    result = robustbench_mixup.evaluate(models, x, y, attacks=("fgsm",), eps=(0.1,))
    table = result.compare("clean", "noisy")
    assert list(zip(table["attack"], table["mode"], table["eps"], strict=True)) == [
        ("clean", "clean", 0.0),
        ("fgsm", "white", 0.1),
    ]
    for _, row in table.iterrows():
        a = result.outcomes["clean", row["attack"], row["mode"], row["eps"]].numpy()
        b = result.outcomes["noisy", row["attack"], row["mode"], row["eps"]].numpy()
        d = stats.paired_difference(a, b)
        assert (row["diff"], row["lo"], row["hi"], row["p_value"], row["n01"], row["n10"]) == (
            d.diff, d.lo, d.hi, d.p_value, d.n01, d.n10)  # fmt: skip
        assert row["diff"] == pytest.approx(b.mean() - a.mean())
    same = result.compare("clean", "clean")
    assert (same["diff"] == 0).all() and (same["p_value"] == 1.0).all() and (same["n01"] + same["n10"] == 0).all()
    with pytest.raises(ValueError, match="compare takes two of the evaluated models"):
        result.compare("clean", "other")


def test_a_model_as_its_own_source_gives_the_white_box(plain):
    """Black box from `source`: crafted on the source, classified by every model. Crafted on the model itself
    (with the same random starts), it is the white box, example for example."""
    models, x, y = plain
    result = robustbench_mixup.evaluate({"clean": models["clean"]}, x, y, attacks=("fgsm", "pgd"), eps=(0.1,),
                                        source=models["clean"])  # fmt: skip
    for attack in ("fgsm", "pgd"):
        assert torch.equal(
            result.outcomes["clean", attack, "black", 0.1], result.outcomes["clean", attack, "white", 0.1]
        )


def test_models_come_back_as_they_went_in(plain):
    models, x, y = plain
    model = copy.deepcopy(models["clean"]).train()
    model[1].weight.requires_grad_(False)
    robustbench_mixup.evaluate({"m": model}, x[:50], y[:50], attacks=("pgd",), eps=(0.1,))
    assert model.training and not model[1].weight.requires_grad and model[3].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("change", "error", "needle"),
    [
        ({"models": {}}, TypeError, "models must be a non-empty dict"),
        ({"models": {"m": "not a model"}}, TypeError, "models['m'] must be a torch.nn.Module"),
        ({"images": "x"}, TypeError, "images must be a float tensor of shape (N, C, H, W)"),
        ({"images": None}, ValueError, "images must lie in [0, 1]"),  # stands for the images × 255, set below
        ({"labels": torch.zeros(3, dtype=torch.int64)}, TypeError, "labels must be an int64 tensor of shape (10,)"),
        ({"attacks": "fgsm"}, TypeError, "attacks must be a non-empty sequence"),
        ({"attacks": ("cw",)}, ValueError, "attacks must be among fgsm, ifgsm, pgd, apgd-ce, apgd-dlr, square, got"),
        ({"eps": 0.1}, TypeError, "eps must be a non-empty sequence"),
        ({"eps": (0.0,)}, ValueError, "eps values must lie in (0, 1]"),
        ({"eps": (float("nan"),)}, ValueError, "eps values must lie in (0, 1]"),
        ({"source": "surrogate"}, TypeError, "source must be a torch.nn.Module or None"),
        ({"seed": -1}, ValueError, "seed must be an int ≥ 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be an int ≥ 1"),
    ],
)
def test_bad_arguments_name_themselves(plain, change, error, needle):
    models, x, y = plain
    args = {"models": {"m": models["clean"]}, "images": x[:10], "labels": y[:10], "attacks": ("fgsm",), "eps": (0.1,),
            "source": None, "seed": 0, "batch_size": 256, **change}  # fmt: skip
    if "images" in change and change["images"] is None:
        args["images"] = x[:10] * 255  # pixel values as 0..255: ε would be in the wrong units
    with pytest.raises(error) as info:
        robustbench_mixup.evaluate(args.pop("models"), args.pop("images"), args.pop("labels"), **args)
    assert needle in str(info.value)


def test_importing_the_package_still_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, robustbench_mixup; r = robustbench_mixup.results; print('torch' in sys.modules, "
            "callable(r.open), callable(robustbench_mixup.evaluate))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]  # results (the database) needs no torch; evaluate loads it
