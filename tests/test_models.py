import pytest
import torch

from robustbench_mixup import models, names
from robustbench_mixup.errors import UsageError
from robustbench_mixup.models import build_model


def test_registry_matches_the_cli_names():
    assert tuple(models.MODELS) == names.MODELS


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
