import pytest
import torch

from robustbench_mixup.learning import models
from robustbench_mixup.learning.models import build_model
from robustbench_mixup.settings import config
from robustbench_mixup.settings.errors import UsageError


def test_registry_matches_the_cli_names():
    assert tuple(models.MODELS) == config.MODELS


@pytest.mark.parametrize("name", list(models.MODELS))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_logits_shape_for_images_in_unit_range(name, shape):
    kwargs = {"width": 8} if name == "preact-resnet18" else {}
    m = build_model(name, in_shape=list(shape), num_classes=7, mean=[0.5] * shape[0], std=[0.25] * shape[0], **kwargs)
    out = m(torch.rand(3, *shape))
    assert out.shape == (3, 7) and out.dtype == torch.float32
    assert m.spec.name == name and m.spec.kwargs["num_classes"] == 7


def test_normalization_lives_inside_the_model():
    m = build_model("mlp", in_shape=[1, 2, 2], num_classes=2, mean=[0.5], std=[0.25])
    buffers = dict(m.named_buffers())
    assert buffers["net.0.mean"].item() == 0.5 and buffers["net.0.std"].item() == 0.25
    assert "net.0.mean" in m.state_dict()
    x = torch.rand(4, 1, 2, 2)
    assert torch.equal(m.net[0](x), (x - 0.5) / 0.25)


def test_preact_dropout_is_one_layer_per_block_between_the_convolutions():
    m = build_model(
        "preact-resnet18", in_shape=[3, 32, 32], num_classes=10, mean=[0.5] * 3, std=[0.2] * 3, width=4, dropout=0.3
    )
    blocks = [b for b in m.modules() if isinstance(b, models.PreActBlock)]
    assert len(blocks) == 8
    assert all(isinstance(b.drop, torch.nn.Dropout) and b.drop.p == 0.3 for b in blocks)
    plain = build_model("preact-resnet18", in_shape=[3, 32, 32], num_classes=10, mean=[0.5] * 3, std=[0.2] * 3, width=4)
    assert not any(isinstance(x, torch.nn.Dropout) for x in plain.modules())
    assert m.state_dict().keys() == plain.state_dict().keys()


def test_bad_model_arguments():
    with pytest.raises(UsageError, match="unknown model"):
        build_model("vit", in_shape=[1, 8, 8], num_classes=2, mean=[0], std=[1])
    with pytest.raises(UsageError, match="dropout"):
        build_model("mlp", in_shape=[1, 8, 8], num_classes=2, mean=[0], std=[1], dropout=1.0)
    with pytest.raises(UsageError, match="does not accept"):
        build_model("mlp", in_shape=[1, 8, 8], num_classes=2, mean=[0], std=[1], width=3)


@pytest.mark.parametrize("shape", [(3, 4, 28, 28), (2, 5, 14, 14), (2, 3, 7, 7), (1, 2, 5, 6)])
def test_maxpool2x2_matches_torch_in_values_and_gradients(shape):
    """The CPU fast path is a drop-in for nn.MaxPool2d(2): same outputs, same gradient routing, ties included."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).relu()  # ReLU zeros: whole windows of tied maxima
    x[..., 0, 1] = x[..., 1, 0] = x[..., 1, 1] = 5.0  # and a tie between positive values in every first window
    upstream = torch.randn(torch.nn.functional.max_pool2d(x, 2).shape, generator=g)
    ours, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_ours, out_theirs = models.MaxPool2x2()(ours), torch.nn.MaxPool2d(2)(theirs)
    assert torch.equal(out_ours, out_theirs)
    (out_ours * upstream).sum().backward()
    (out_theirs * upstream).sum().backward()
    assert torch.equal(ours.grad, theirs.grad)  # every window's gradient goes to its first maximum
    with torch.no_grad():
        assert torch.equal(models.MaxPool2x2()(x), out_theirs)


def test_smallcnn_input_gradient_is_unchanged_by_the_fast_pool():
    model = build_model("smallcnn", in_shape=[1, 28, 28], num_classes=10, mean=[0.1], std=[0.3]).eval()
    reference = build_model("smallcnn", in_shape=[1, 28, 28], num_classes=10, mean=[0.1], std=[0.3]).eval()
    reference.load_state_dict(model.state_dict())
    reference.net[3] = reference.net[6] = torch.nn.MaxPool2d(2)
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    grads = []
    for m in (model, reference):
        xx = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(m(xx), y).backward()
        grads.append(xx.grad)
    assert isinstance(model.net[3], models.MaxPool2x2) and torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("name, shape, options", [("mlp", (1, 8, 8), {}), ("smallcnn", (1, 28, 28), {}),
                                                   ("preact-resnet18", (3, 32, 32), {"width": 4})])  # fmt: skip
def test_predictions_do_not_depend_on_the_batch_size_and_restore_the_mode(name, shape, options):
    from robustbench_mixup.learning.devices import PREDICT_BATCH, predict

    torch.manual_seed(0)
    model = build_model(name, in_shape=list(shape), num_classes=10, mean=[0.1] * shape[0], std=[0.3] * shape[0],
                        **options).train()  # fmt: skip
    x = torch.rand(300, *shape)
    with torch.inference_mode():
        logits = model.eval()(x)
    model.train()
    for batch in (None, 1, 64, PREDICT_BATCH["cpu"], 1024):
        assert torch.equal(predict(model, x, batch_size=batch), logits.argmax(1))
        assert model.training
