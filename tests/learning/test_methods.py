"""The training methods (mixing.STEPS) against their definitions, and a run that trains several of them."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mixup.learning import checkpoints, mixing
from robustbench_mixup.learning.models import MLP, SmallCNN, mixing_layers
from robustbench_mixup.settings.config import METHODS, MethodName, TrainConfig
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.stages.train import train_run
from robustbench_mixup.store.database import ResultsDB


def _batch(n=12, k=4, shape=(1, 8, 8)):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, *shape, generator=g), torch.randint(0, k, (n,), generator=g)


def _cnn(k=4):
    torch.manual_seed(0)
    return SmallCNN((1, 8, 8), k, (0.5,), (0.25,)).eval()


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_the_steps_and_the_method_registry_name_the_same_methods():
    assert list(mixing.STEPS) == list(METHODS) == list(MethodName.values())


def test_erm_is_the_model_on_the_batch_with_the_labels():
    x, y = _batch()
    model = _cnn()
    step = mixing.erm_step(model, x, y, num_classes=4)
    assert torch.equal(step.logits, model(x)) and step.targets is y and step.credit is y
    assert (step.lam, step.layer) == (1.0, None)


@pytest.mark.parametrize("name", ["mixup", "cutmix", "manifold-mixup", "label-smoothing"])
def test_a_parameter_of_zero_is_erm_and_draws_nothing(name):
    x, y = _batch()
    model, g = _cnn(), _gen(5)
    state = g.get_state()
    step = mixing.STEPS[name](model, x, y, 0.0, num_classes=4, generator=g)
    assert torch.equal(g.get_state(), state)  # the stream is untouched, as ERM's
    assert torch.equal(step.logits, model(x)) and torch.equal(step.targets, y) and step.layer is None


@pytest.mark.parametrize(("name", "batch"), [("mixup", mixing.mixup_batch), ("cutmix", mixing.cutmix_batch)])
def test_input_mixing_steps_train_on_their_batch_function(name, batch):
    x, y = _batch()
    model = _cnn()
    step = mixing.STEPS[name](model, x, y, 1.0, num_classes=4, generator=_gen(7))
    mixed = batch(x, y, 1.0, num_classes=4, generator=_gen(7))
    assert torch.equal(step.logits, model(mixed.images))
    assert torch.equal(step.targets, mixed.targets) and torch.equal(step.credit, mixed.targets)
    assert (step.lam, step.layer) == (mixed.lam, 0)


def _manifold_expected(model, x, y, alpha, seed, k_classes=4):
    """Manifold Mixup by its definition: redraw λ, the permutation and the layer from the same stream, run the
    network block by block and mix the representation after the drawn layer."""
    g = _gen(seed)
    lam, index = mixing._draw(len(y), alpha, y.device, g)
    layers = mixing_layers(model)
    k = int(torch.randint(0, len(layers) + 1, (1,), generator=g))
    cut = 0 if k == 0 else next(i + 1 for i, m in enumerate(model.net) if m is layers[k - 1])
    h = model.net[:cut](x)
    h = lam * h + (1 - lam) * h[index]
    onehot = F.one_hot(y, k_classes).float()
    return model.net[cut:](h), lam * onehot + (1 - lam) * onehot[index], lam, k


def test_manifold_mixup_mixes_the_representation_at_the_drawn_layer():
    x, y = _batch()
    model = _cnn()
    seen = set()
    for seed in range(40):
        step = mixing.manifold_mixup_step(model, x, y, 2.0, num_classes=4, generator=_gen(seed))
        logits, targets, lam, k = _manifold_expected(model, x, y, 2.0, seed)
        assert step.layer == k and step.lam == lam
        torch.testing.assert_close(step.logits, logits)
        torch.testing.assert_close(step.targets, targets)
        torch.testing.assert_close(step.targets.sum(1), torch.ones(len(y)))
        seen.add(k)
    assert seen == {0, 1, 2}  # the input and both of smallcnn's stages (P(a layer never drawn in 40) < 1e-6)
    assert all(not m._forward_hooks for m in model.modules())  # the mixing hook is gone after each step


def test_manifold_mixup_mixes_a_model_without_declared_layers_at_its_input():
    x, y = _batch()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    for seed in range(5):
        step = mixing.manifold_mixup_step(model, x, y, 1.0, num_classes=4, generator=_gen(seed))
        mixed = mixing.mixup_batch(x, y, 1.0, num_classes=4, generator=_gen(seed))
        assert step.layer == 0
        torch.testing.assert_close(step.logits, model(mixed.images))


def test_every_package_model_declares_hidden_layers_of_its_own():
    for model in (_cnn(), MLP((1, 8, 8), 4, (0.5,), (0.25,))):
        layers = mixing_layers(model)
        assert len(layers) == 2 and all(any(layer is m for m in model.modules()) for layer in layers)


def test_label_smoothing_smooths_the_targets_and_credits_the_label():
    x, y = _batch()
    model = _cnn()
    step = mixing.label_smoothing_step(model, x, y, 0.2, num_classes=4)
    expected = torch.full((len(y), 4), 0.05)
    expected[torch.arange(len(y)), y] = 0.85  # (1 − s) + s/K
    torch.testing.assert_close(step.targets, expected)
    assert torch.equal(step.logits, model(x)) and step.credit is y and step.layer is None
    with pytest.raises(ValueError, match="smoothing"):
        mixing.label_smoothing_step(model, x, y, 1.0, num_classes=4)


def test_methods_are_spelt_one_way_and_checked():
    cfg = TrainConfig(methods=["label-smoothing", "erm", "cutmix"]).validate()
    assert cfg.methods == ("erm", "cutmix", "label-smoothing")  # METHODS order, whatever the order given
    assert cfg.members == ("erm", "cutmix", "label-smoothing", "surrogate")
    assert cfg.compared == ("cutmix", "label-smoothing")
    assert TrainConfig(**cfg.to_dict()) == cfg  # round trip through the stored JSON
    assert (cfg.param("cutmix"), cfg.param("label-smoothing"), cfg.param("erm")) == (1.0, 0.1, 0.0)
    assert cfg.describe("label-smoothing") == "label smoothing (s = 0.1)" and cfg.describe("erm") == "ERM"
    for bad, match in ((("mixup",), "must include erm"), (("erm", "erm"), "more than once"),
                       (("erm", "bogus"), "unknown method 'bogus'"), ((), "needs one or more")):  # fmt: skip
        with pytest.raises(UsageError, match=match):
            TrainConfig(methods=bad).validate()
    for field, value in (("cutmix_alpha", -1.0), ("manifold_alpha", float("nan")), ("smoothing", 1.0)):
        with pytest.raises(UsageError, match=field.replace("_", "-")):
            TrainConfig(**{field: value}).validate()


def test_a_run_recorded_before_methods_existed_reads_and_compares_as_it_did():
    old = {k: v for k, v in TrainConfig().to_dict().items()}
    assert not {"methods", "cutmix_alpha", "manifold_alpha", "smoothing"} & set(old)  # defaults are not written
    assert TrainConfig(**old).methods == ("erm", "mixup") and TrainConfig(**old).to_dict() == old
    family = TrainConfig(methods=("erm", "mixup", "cutmix")).to_dict()
    assert family["methods"] == ["erm", "mixup", "cutmix"] and family["cutmix_alpha"] == 1.0  # a trained method's
    assert "smoothing" not in family and "manifold_alpha" not in family  # parameter, even at its default; no other
    with pytest.raises(UsageError, match="--smoothing sets label-smoothing's parameter, but --methods does not"):
        TrainConfig(methods=("erm", "cutmix"), smoothing=0.2).validate()
    with pytest.raises(UsageError, match="a method besides erm"):
        TrainConfig(methods=("erm",)).validate()


@pytest.mark.parametrize("methods, train_n", [(("erm", "mixup"), None), (("erm", "cutmix", "label-smoothing"), 500),
                                              (tuple(METHODS), None)])  # fmt: skip
def test_the_suggested_train_command_rebuilds_the_same_settings(methods, train_n):
    from robustbench_mixup.cli.parser import build_parser
    from robustbench_mixup.cli.verbs import method_params
    from robustbench_mixup.settings.commands import train_command
    from robustbench_mixup.settings.config import default_run_name

    cfg = TrainConfig(methods=methods, cutmix_alpha=0.5 if "cutmix" in methods else 1.0, seed=3,
                      train_n=train_n).validate()  # fmt: skip
    words = train_command(".", "r", cfg.to_dict(), resume=True).split()[1:]
    args = build_parser().parse_args(words)
    rebuilt = TrainConfig(dataset=args.dataset, model=args.model, epochs=args.epochs, seed=args.seed,
                          batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, dropout=args.dropout,
                          methods=tuple(args.methods), train_n=args.train_n,
                          ).with_params(method_params(args)).validate()  # fmt: skip
    assert rebuilt.to_dict() == cfg.to_dict() and ("train_n" in cfg.to_dict()) == (train_n is not None)
    assert default_run_name(cfg) == ("mnist-5k-smallcnn-a1-s3" if methods == ("erm", "mixup") else
                                     f"mnist-5k-smallcnn-{'-'.join(cfg.compared)}-s3")  # fmt: skip


@pytest.mark.slow
def test_a_run_trains_every_method_from_the_same_weights_on_the_same_batches(tmp_path):
    cfg = TrainConfig(dataset="digits", model="mlp", epochs=1, batch_size=64, lr=0.05, smoothing=0.0,
                      methods=tuple(METHODS))  # fmt: skip
    result = train_run(cfg, run="fam", out=tmp_path, device="cpu")
    assert set(result.final) == set(cfg.members)
    weights = {}
    for member in cfg.members:
        tensors, meta = checkpoints.read(tmp_path / "checkpoints" / "fam" / f"{member}.safetensors")
        weights[member] = tensors
        assert (meta["member"], meta["epoch"]) == (member, 1)
    # smoothing 0 is ERM: the same initial weights and batches give bitwise the same model
    assert all(torch.equal(weights["erm"][k], weights["label-smoothing"][k]) for k in weights["erm"])
    for member in ("mixup", "cutmix", "manifold-mixup"):  # the methods differ only in their step
        assert not torch.equal(weights["erm"]["net.2.weight"], weights[member]["net.2.weight"]), member
    with ResultsDB(tmp_path / "reports" / "results.sqlite") as db:
        assert {r["model"] for r in db.clean_rows("fam")} == set(cfg.members)
