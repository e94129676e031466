import json
import struct

import pytest
import torch
from safetensors.torch import load as safetensors_load

from robustbench_mixup import __version__
from robustbench_mixup.learning import checkpoints
from robustbench_mixup.learning.models import build_model
from robustbench_mixup.settings.errors import UsageError


def _model(**kw):
    return build_model("smallcnn", in_shape=[1, 8, 8], num_classes=10, mean=[0.3], std=[0.2], **kw)


def _rewrite_header(path, edit):
    """Apply `edit` to the JSON header of a safetensors file, keeping the data section."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])


def test_round_trip_rebuilds_the_model_and_its_metadata(tmp_path):
    m = _model(dropout=0.25)
    path = tmp_path / "m.safetensors"
    checkpoints.save(m, path, metadata={"dataset": "digits", "seed": 3, "metrics": {"test_acc": 0.5}})
    loaded, meta = checkpoints.load(path)
    assert type(loaded) is type(m) and not loaded.training
    for (k, a), (k2, b) in zip(m.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert meta["seed"] == 3 and meta["dataset"] == "digits" and meta["package_version"] == __version__
    assert meta["model"] == {"name": "smallcnn", "kwargs": m.spec.kwargs}
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(m.eval()(x), loaded(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary left behind


def test_extra_tensors_travel_but_are_not_weights(tmp_path):
    m = _model()
    path = tmp_path / "m.safetensors"
    checkpoints.save(m, path, metadata={}, extra={"momentum/w": torch.ones(3)})
    _, _, extra = checkpoints.load_with_extra(path)
    assert torch.equal(extra["momentum/w"], torch.ones(3))
    checkpoints.load(path)  # strict loading ignores the __extra__/ namespace


def test_a_flipped_weight_byte_is_detected(tmp_path):
    path = tmp_path / "m.safetensors"
    checkpoints.save(_model(), path, metadata={})
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(UsageError, match="checksum"):
        checkpoints.load(path)


def test_a_truncated_file_is_detected(tmp_path):
    path = tmp_path / "m.safetensors"
    checkpoints.save(_model(), path, metadata={})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UsageError, match="unreadable"):
        checkpoints.load(path)


def _resign(path, edit):
    """Apply `edit` to a checkpoint's metadata and recompute its digest: a hostile file that is
    internally consistent, which only the metadata checks can refuse."""
    tensors, _ = safetensors_load(path.read_bytes()), None

    def rewrite(header):
        meta = json.loads(header["__metadata__"]["robust_eval"])
        edit(meta)
        meta["sha256"] = checkpoints._digest(tensors, meta)
        header["__metadata__"]["robust_eval"] = json.dumps(meta)

    _rewrite_header(path, rewrite)


def test_a_flipped_metadata_byte_is_detected(tmp_path):
    path = tmp_path / "m.safetensors"
    checkpoints.save(_model(), path, metadata={"epoch": 26, "metrics": {"test_acc": 0.5}})
    raw = path.read_bytes()
    at = raw.index(b"26", raw.index(b"epoch"))  # one digit of the epoch, inside the header's JSON
    path.write_bytes(raw[:at] + b"27" + raw[at + 2 :])
    with pytest.raises(UsageError, match="fails its checksum"):
        checkpoints.load(path)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda m: m["model"].update(name="resnet-9000"), "unknown model 'resnet-9000'"),
        (lambda m: m["model"]["kwargs"].update(dropout="abc"), "dropout must be a number"),
        (lambda m: m["model"]["kwargs"].update(in_shape=[1, -8, 8]), "in_shape must be"),
        (lambda m: m["model"]["kwargs"].update(num_classes=10**9), "num_classes must be"),
        (lambda m: m["model"]["kwargs"].update(std=[0.0]), "std must be > 0"),
        (lambda m: m["model"]["kwargs"].update(mean=[0.1, 0.2]), "mean must be 1 finite numbers"),
        (lambda m: m["model"]["kwargs"].update(evil=1), "are not"),
        (lambda m: m.update(format=1), "older robust-eval"),
    ],
)
def test_hostile_but_consistent_metadata_is_refused_before_a_model_is_built(tmp_path, edit, needle):
    path = tmp_path / "m.safetensors"
    checkpoints.save(_model(), path, metadata={})
    _resign(path, edit)
    with pytest.raises(UsageError, match=needle):
        checkpoints.load(path)


def test_a_huge_width_is_refused_without_allocating(tmp_path):
    m = build_model("preact-resnet18", in_shape=[3, 8, 8], num_classes=10, mean=[0.5] * 3, std=[0.2] * 3, width=2)
    path = tmp_path / "m.safetensors"
    checkpoints.save(m, path, metadata={})
    _resign(path, lambda meta: meta["model"]["kwargs"].update(width=200000))
    with pytest.raises(UsageError, match=r"width must be an int in \[1, 1024\]"):
        checkpoints.load(path)


def test_foreign_safetensors_without_metadata(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(UsageError, match="no robust-eval metadata"):
        checkpoints.load(path)


def test_nothing_is_unpickled(tmp_path):
    # A pickle under a checkpoint's name is rejected as unreadable, never executed.
    path = tmp_path / "evil.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(UsageError, match="unreadable"):
        checkpoints.load(path)


def test_unserializable_metadata_writes_nothing(tmp_path):
    path = tmp_path / "m.safetensors"
    for bad in ({"bad": object()}, {"nan": float("nan")}, {1: "not a str key"}):
        with pytest.raises(TypeError, match="metadata must be JSON-serializable"):
            checkpoints.save(_model(), path, metadata=bad)
    with pytest.raises(TypeError, match="metadata must be a dict"):
        checkpoints.save(_model(), path, metadata=[("a", 1)])
    assert list(tmp_path.iterdir()) == []


def test_a_model_not_from_the_registry_needs_its_spec(tmp_path):
    with pytest.raises(ValueError, match="metadata must name the model"):
        checkpoints.save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors", metadata={})


def test_stale_temporaries_are_swept(tmp_path):
    from robustbench_mixup.settings.fsutil import atomic_path, remove_stale_temporaries

    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.safetensors") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError  # an exception cleans up after itself...
    assert list(tmp_path.iterdir()) == []
    orphan = tmp_path / ".a.safetensors.k3j2.tmp"  # ...a kill -9 cannot: this is what it leaves
    orphan.write_bytes(b"half")
    (tmp_path / "a.safetensors").write_bytes(b"whole")
    assert remove_stale_temporaries(tmp_path) == [orphan]
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]
