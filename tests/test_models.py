import importlib.util
import itertools
import json
import subprocess
import sys

import pytest
import torch

from splitbed.errors import UserError
from splitbed.models import EDGE_ONLY, SERVER_ONLY, get_model
from splitbed.models.datasets import batches, load_dataset, read_idx
from splitbed.models.efficientnet_lite import load_network
from splitbed.models.evaluate import evaluate
from splitbed.models.partition import batched
from tests.conftest import REPO


def real_inputs(model, count=2):
    x, _, _ = next(batches(load_dataset(model.default_dataset, model), count))
    return x


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_lite_head_then_tail_is_exactly_the_original_network(name):
    model = get_model(name)
    x = real_inputs(model)
    with torch.no_grad():
        original = load_network(name)(x)
        assert len(model.split_points) == len(load_network(name)._blocks) + 3
        for split in model.split_points:
            out = model.tail(split)(model.head(split)(x))
            assert (out - original).abs().max().item() == 0.0, split


def test_fmnist_head_then_tail_is_exact_at_every_split():
    model = get_model("fmnist_cnn")
    x = real_inputs(model, 16)
    with torch.no_grad():
        reference = model.full()(x)
        for split in model.split_points:
            assert torch.equal(model.tail(split)(model.head(split)(x)), reference), split
    assert model.split_points == [SERVER_ONLY, "conv1", "conv2", "conv3", EDGE_ONLY]


def test_segments_chain_to_the_network_and_the_batch_copy_agrees_without_touching_the_model():
    model = get_model("efficientnet_lite0")
    x = real_inputs(model, 3)
    splits = [SERVER_ONLY, "block3", "block9", EDGE_ONLY]
    with torch.no_grad():
        reference = model.full()(x)
        carried = x
        for start, end in itertools.pairwise(splits):
            carried = model.segment(start, end)(carried)
        assert torch.equal(carried, reference)
        fast = model.for_batches()
        batched_out = batched(fast.full(), x, size=2)
    assert batched_out.is_contiguous() and (batched_out - reference).abs().max().item() < 1e-3
    assert (batched_out.argmax(1) == reference.argmax(1)).all()
    weights = [m.weight for m in model.full().modules() if isinstance(m, torch.nn.Conv2d)]
    assert weights and all(w.is_contiguous() for w in weights)  # the runtime's model keeps its layout


def test_split_point_ends_and_unknown_split():
    model = get_model("fmnist_cnn")
    assert len(model.head(SERVER_ONLY)) == 0 and len(model.tail(EDGE_ONLY)) == 0
    with pytest.raises(UserError, match="conv1"):
        model.index("conv9")


def test_fmnist_cnn_reaches_91_percent_on_the_10k_test_set():
    scores = evaluate(get_model("fmnist_cnn"), "fashion-mnist-test", batch_size=1000, quiet=True)
    assert scores.n_labelled == 10000
    assert scores.top1 >= 0.91


def test_lite0_top1_on_the_labelled_photos():
    scores = evaluate(get_model("efficientnet_lite0"), "imagenet-samples", limit=20, quiet=True)
    assert scores.n_labelled == 20 and scores.n_items == 20
    assert scores.top1 >= 0.85


def test_imagenet_samples_are_deterministic_and_a_few_hundred():
    model = get_model("efficientnet_lite0")
    first = list(load_dataset("imagenet-samples", model))
    assert len(first) >= 300
    assert sum(s.label is not None for s in first) == 20
    assert len({s.id for s in first}) == len(first)
    again = load_dataset("imagenet-samples", model)
    for a, b in zip(first[:40], itertools.islice(again, 40), strict=True):
        assert a.id == b.id and torch.equal(a.tensor, b.tensor)
    assert first[30].tensor.shape == (3, 224, 224)


def test_eval_cli_writes_json(tmp_path):
    out = tmp_path / "out.json"
    subprocess.run([sys.executable, "-m", "splitbed.models", "eval", "fmnist_cnn", "--dataset",
                    "fashion-mnist-test", "--json", str(out), "--quiet"], check=True, cwd=REPO)
    data = json.loads(out.read_text())
    assert data["n_labelled"] == 10000 and data["top1"] >= 0.91


def test_profile_cli_lists_every_split(tmp_path):
    out = tmp_path / "profile.json"
    subprocess.run([sys.executable, "-m", "splitbed.models", "profile", "efficientnet_lite0", "--runs", "2",
                    "--json", str(out)], check=True, cwd=REPO, capture_output=True)
    data = json.loads(out.read_text())
    names = [row["name"] for row in data["splits"]]
    assert names == get_model("efficientnet_lite0").split_points
    by_name = {row["name"]: row for row in data["splits"]}
    assert by_name["stem"]["shape"] == [32, 112, 112]
    assert by_name["stem"]["fp32_bytes"] == 32 * 112 * 112 * 4
    assert by_name["block4"]["fp32_bytes"] < by_name["block0"]["fp32_bytes"]
    for row in data["splits"]:
        assert row["head_ms"] >= 0 and row["tail_ms"] >= 0
    assert by_name["stem"]["head_ms"] < by_name["block15"]["head_ms"]


def test_python_path_user_model_is_exact():
    model = get_model("python:tests.tiny_model:build")
    assert model.split_points == [SERVER_ONLY, "conv", "pool", EDGE_ONLY]
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        for split in model.split_points:
            assert torch.equal(model.tail(split)(model.head(split)(x)), model.full()(x))


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision installed")
def test_missing_torchvision_says_how_to_install():
    with pytest.raises(UserError, match=r"\[vision\]"):
        get_model("torchvision:resnet18", weights="w.pt")


def test_unknown_model_suggests_the_closest():
    with pytest.raises(UserError, match="efficientnet_lite0"):
        get_model("efficientnet_lite")


def test_bad_idx_file_and_user_folder_errors(tmp_path):
    bad = tmp_path / "x.gz"
    import gzip
    with gzip.open(bad, "wb") as f:
        f.write(b"garbage!")
    with pytest.raises(UserError, match="IDX"):
        read_idx(bad)
    (tmp_path / "labels.txt").write_text("a.png 3\nb.png notanumber\n")
    with pytest.raises(UserError, match="labels.txt:2"):
        list(load_dataset(f"folder:{tmp_path}", get_model("fmnist_cnn")))


def test_user_folder_in_imagefolder_layout(tmp_path):
    from PIL import Image
    for cls in ("bag", "shoe"):
        (tmp_path / cls).mkdir()
        Image.new("L", (28, 28), 128).save(tmp_path / cls / "one.png")
    samples = list(load_dataset(f"folder:{tmp_path}", get_model("fmnist_cnn")))
    assert [(s.label, s.id) for s in samples] == [(0, "bag/one.png"), (1, "shoe/one.png")]
    assert samples[0].tensor.shape == (1, 28, 28)


def test_calibration_and_evaluation_samples_never_overlap():
    from splitbed.models.datasets import calibration_samples, evaluation_samples

    model = get_model("efficientnet_lite0")
    calibration = {s.id for s in calibration_samples(model)}
    evaluation = [s for s in evaluation_samples(model)]
    assert len(calibration) == 204 and len(evaluation) == 260
    assert not calibration & {s.id for s in evaluation}
    assert sum(s.label is not None for s in evaluation) == 20
    photos = {i.split("#")[0] for i in calibration}
    assert not photos & {s.id.split("#")[0] for s in evaluation}
