"""The photo evaluation set's pieces (Qt bundles, DEP-5 licences, photo vs drawing, halves) and the
three accuracy criteria with their bootstrap intervals."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from splitbed.codecs.criteria import ViewLosses, calibration, summarise
from splitbed.models.photos import (
    copyright_stanzas,
    half_of,
    licence_of,
    load_label_table,
    looks_like_a_photo,
    rcc_files,
)


def make_rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A version-2 Qt resource bundle holding `files` (path -> (bytes, zlib-compressed)) in one folder."""
    folder = next(iter(files)).split("/")[0]
    names, data = b"", b""

    def name(text: str) -> int:
        nonlocal names
        offset = len(names)
        names += struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")
        return offset

    nodes = [struct.pack(">IHII", 0, 2, 1, 1) + bytes(8),  # root: one child (the folder) at node 1
             struct.pack(">IHII", name(folder), 2, len(files), 2) + bytes(8)]
    for path, (blob, compressed) in files.items():
        stored = struct.pack(">I", len(blob)) + zlib.compress(blob) if compressed else blob
        nodes.append(struct.pack(">IHHHI", name(path.split("/", 1)[1]), int(compressed), 0, 0, len(data)) + bytes(8))
        data += struct.pack(">I", len(stored)) + stored
    tree = b"".join(nodes)
    header = 20
    return (struct.pack(">4sIIII", b"qres", 2, header, header + len(tree), header + len(tree) + len(data))
            + tree + data + names)


def test_a_qt_resource_bundle_gives_back_its_files_plain_and_compressed():
    files = {"pics/cat.webp": (b"\x00cat" * 50, False), "pics/dog.jpg": (b"dog!" * 300, True)}
    assert rcc_files(make_rcc(files)) == {path: blob for path, (blob, _) in files.items()}
    with pytest.raises(ValueError):
        rcc_files(b"not a bundle at all, twenty bytes or more")


def test_the_last_matching_dep5_stanza_gives_the_licence():
    text = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: someone
License: GPL-3+

Files: src/activities/erase/resource/*
       src/activities/other.webp
Copyright: a photographer
License: CC-BY-SA-4.0
 long licence text
"""
    stanzas = copyright_stanzas(text)
    assert licence_of("src/activities/erase/resource/crab.webp", stanzas) == "CC-BY-SA-4.0"
    assert licence_of("src/activities/other.webp", stanzas) == "CC-BY-SA-4.0"
    assert licence_of("src/core/x.png", stanzas) == "GPL-3+"
    assert licence_of("x", []) == "unknown"


def test_photos_are_told_from_flat_drawings():
    rng = np.random.default_rng(0)
    noisy = (rng.normal(128, 40, (120, 120, 3)) + np.linspace(0, 60, 120)[:, None, None]).clip(0, 255)
    assert looks_like_a_photo(Image.fromarray(noisy.astype(np.uint8)))
    flat = np.zeros((120, 120, 3), np.uint8)
    flat[:60] = (200, 30, 30)
    flat[60:] = (30, 30, 200)
    assert not looks_like_a_photo(Image.fromarray(flat))
    assert not looks_like_a_photo(Image.fromarray(noisy[:40, :40].astype(np.uint8)))  # too small to judge
    buffer = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(buffer, "PNG")
    assert looks_like_a_photo(Image.open(buffer))


def test_halves_are_fixed_by_content_and_both_used():
    digests = [f"{k:08x}" + "0" * 56 for k in range(1000)]
    halves = [half_of(d) for d in digests]
    assert halves == [half_of(d) for d in digests]
    assert 400 < halves.count("tune") < 600


def test_the_label_table_names_imagenet_classes():
    table = load_label_table()
    assert set(table) == {"tuxpaint-stamps-default", "gcompris-qt-data"}
    for stems in table.values():
        for stem, classes in stems.items():
            assert classes and all(isinstance(c, int) and 0 <= c < 1000 for c in classes), stem
    assert table["tuxpaint-stamps-default"]["tiger"] == [292]


def test_three_criteria_count_what_they_say():
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8], [0.5, 0.45, 0.05]])
    coded = np.array([1, 0, 2, 1])  # views 0 and 3 flip
    labels = [(0,), (), (1,), (0, 2)]  # view 2's reference is wrong and stays wrong; view 1 unlabelled
    losses = ViewLosses.of(probs, coded, labels).losses
    assert np.allclose(losses["agreement"], [1, 0, 0, 1])
    assert np.allclose(losses["expected"], [0.5, 0, 0, 0.05])
    assert np.isnan(losses["accuracy"][1]) and np.allclose(losses["accuracy"][[0, 2, 3]], [1, 0, 1])
    assert np.isnan(losses["agreement_confident"][1])  # reference at 0.4: not confident
    photos = np.array(["a", "a", "b", "c"])
    out = summarise(ViewLosses.of(probs, coded, labels), photos, np.ones(4, bool), resamples=200)
    assert out["agreement"]["pts"] == pytest.approx(50.0)
    assert out["accuracy"]["pts"] == pytest.approx(100 * 2 / 3) and out["accuracy"]["views"] == 3
    assert out["expected"]["pts"] == pytest.approx(100 * 0.55 / 4)
    for entry in out.values():
        assert entry["lo"] <= entry["pts"] <= entry["hi"]
    assert out["agreement"]["photos"] == 3
    none = summarise(ViewLosses.of(probs, coded, labels), photos, np.zeros(4, bool))
    assert none["accuracy"] == {"pts": None, "lo": None, "hi": None, "views": 0, "photos": 0}


def test_the_interval_narrows_with_more_photos_and_resamples_photos_not_views():
    rng = np.random.default_rng(1)

    def width(photos: int, views: int = 3) -> float:
        flips = rng.random(photos * views) < 0.1
        losses = ViewLosses.of(np.tile([0.9, 0.1], (photos * views, 1)), flips.astype(int), [()] * (photos * views))
        out = summarise(losses, np.repeat(np.arange(photos).astype(str), views), np.ones(photos * views, bool))
        return out["agreement"]["hi"] - out["agreement"]["lo"]

    assert width(500) < width(20) / 2


def test_calibration_of_a_perfectly_calibrated_reference_is_near_zero():
    rng = np.random.default_rng(2)
    confidence = rng.uniform(0.5, 1.0, 20000)
    right = rng.random(20000) < confidence
    probs = np.stack([confidence, 1 - confidence], 1)
    labels = [(0,) if r else (1,) for r in right]
    out = calibration(probs, labels)
    assert out["ece_pts"] < 2.0
    assert out["accuracy_pct"] == pytest.approx(out["mean_confidence_pct"], abs=1.5)


def test_views_of_one_photo_are_resampled_together():
    """Five identical views per photo carry no more evidence than one: the interval stays as wide."""
    flips = (np.arange(60) % 7 == 0).astype(int)  # per photo

    def interval(views: int) -> float:
        per_view = np.repeat(flips, views)
        losses = ViewLosses.of(np.tile([0.9, 0.1], (len(per_view), 1)), per_view, [()] * len(per_view))
        out = summarise(losses, np.repeat(np.arange(60).astype(str), views), np.ones(len(per_view), bool))
        return out["agreement"]["hi"] - out["agreement"]["lo"]

    assert interval(5) == pytest.approx(interval(1), rel=0.05)


def test_a_missing_or_damaged_photo_set_is_a_clear_error(tmp_path):
    from splitbed.errors import UserError
    from splitbed.models.photos import load_manifest

    with pytest.raises(UserError) as err:
        load_manifest(tmp_path)
    assert "make photos" in err.value.render()
    (tmp_path / "manifest.jsonl").write_text('{"id": "p/x.png", "package": "p", "version": "1", "licence": "MIT", '
                                             '"file": "x.png", "sha256": "00", "labels": []}\n')
    with pytest.raises(UserError) as err:
        load_manifest(tmp_path)
    assert "x.png is missing" in err.value.render()


def test_temperature_scaling_recovers_the_temperature_labels_were_drawn_at():
    """Labels drawn from softmax(logits / 0.5): the reference read at T=1 is under-confident (right more
    often than it says); the fit finds T near 0.5 and the calibrated confidence matches the accuracy."""
    from splitbed.codecs.criteria import fit_temperature, softmax

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1.5, (4000, 10))
    truth = softmax(logits, 0.5)
    labels = [(int(rng.choice(10, p=p)),) for p in truth]
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(0.5, rel=0.08)
    for probs, gap in ((softmax(logits), "under"), (softmax(logits, t), "calibrated")):
        stats = calibration(probs, labels)
        if gap == "under":
            assert stats["accuracy_pct"] - stats["mean_confidence_pct"] > 10
        else:
            assert abs(stats["accuracy_pct"] - stats["mean_confidence_pct"]) < 2
    with pytest.raises(ValueError, match="labelled"):
        fit_temperature(logits[:3], [(), (), ()])


def test_the_calibrated_expected_drop_counts_a_flip_of_an_unsure_but_right_reference():
    """The reference is right at 0.5 confidence; the coded top-1 takes its runner-up (0.4). The plain
    expected drop counts 0.1 of a point per such view; calibrated (T = 0.25), close to the whole point
    the label loses."""
    from splitbed.codecs.criteria import softmax

    logits = np.log(np.array([[0.5, 0.4, 0.1]] * 4))
    coded, labels = np.array([1, 1, 1, 1]), [(0,)] * 4
    losses = ViewLosses.of(softmax(logits), coded, labels, calibrated_probs=softmax(logits, 0.25)).losses
    assert np.allclose(losses["expected"], 0.1) and np.allclose(losses["accuracy"], 1.0)
    assert np.allclose(losses["calibrated"], (0.5**4 - 0.4**4) / (0.5**4 + 0.4**4 + 0.1**4), atol=1e-9)
    assert "calibrated" not in ViewLosses.of(softmax(logits), coded, labels).losses


def test_the_profile_calibrates_its_reference_where_items_are_labelled_and_not_where_none_is():
    from splitbed.aglop.profile import reference_probabilities
    from splitbed.codecs.criteria import softmax

    rng = np.random.default_rng(5)
    logits = rng.normal(0, 1.5, (2000, 10))
    labels = [(int(rng.choice(10, p=p)),) for p in softmax(logits, 0.5)]
    plain, calibrated, t = reference_probabilities(logits, labels)
    assert t == pytest.approx(0.5, rel=0.1) and np.allclose(plain, softmax(logits))
    assert np.allclose(calibrated, softmax(logits, t))
    plain, calibrated, t = reference_probabilities(logits, [()] * len(logits))  # no label: T = 1
    assert t == 1.0 and np.allclose(calibrated, plain)
