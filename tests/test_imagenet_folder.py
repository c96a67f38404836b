"""`dataset: imagenet-folder:PATH` (splitbed/models/imagenet_folder.py): each layout ImageNet ships in,
labelled with the ILSVRC-2012 index of its synset, on small folders the tests make themselves."""

import numpy as np
import pytest
from PIL import Image

from splitbed.errors import UserError
from splitbed.models.imagenet_folder import labelled_images, synset_indices

TENCH, GOLDFISH, TOILET_TISSUE = "n01440764", "n01443537", "n15075141"  # indices 0, 1 and 999


def image(path, shade: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (shade, 50, 200)).save(path)


def labels_of(folder) -> list[tuple[str, int | None]]:
    return [(id_, label) for _, label, id_ in labelled_images(folder)]


def test_the_synset_list_is_the_sorted_thousand():
    indices = synset_indices()
    assert len(indices) == 1000 and list(indices) == sorted(indices)
    assert (indices[TENCH], indices[GOLDFISH], indices[TOILET_TISSUE]) == (0, 1, 999)


def test_class_folders_named_by_synset_keep_the_global_indices(tmp_path):
    image(tmp_path / TOILET_TISSUE / "a.JPEG")
    image(tmp_path / GOLDFISH / "b.jpg")
    (tmp_path / GOLDFISH / "notes.txt").write_text("not an image: skipped by its suffix")
    (tmp_path / "README").write_text("ignored")
    assert labels_of(tmp_path) == [(f"{GOLDFISH}/b.jpg", 1), (f"{TOILET_TISSUE}/a.JPEG", 999)]


def test_synset_prefixed_file_names(tmp_path):
    image(tmp_path / f"{TENCH}_10026.JPEG")
    image(tmp_path / f"{TOILET_TISSUE}_7.JPEG")
    assert labels_of(tmp_path) == [(f"{TENCH}_10026.JPEG", 0), (f"{TOILET_TISSUE}_7.JPEG", 999)]


def test_the_kaggle_solution_file_labels_a_flat_validation_folder(tmp_path):
    for n in (1, 2, 3):
        image(tmp_path / f"ILSVRC2012_val_0000000{n}.JPEG")
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        f"ILSVRC2012_val_00000001,{GOLDFISH} 10 20 30 40 {GOLDFISH} 1 2 3 4\n"
        f"ILSVRC2012_val_00000002,{TOILET_TISSUE} 1 1 5 5\n")
    assert labels_of(tmp_path) == [("ILSVRC2012_val_00000001.JPEG", 1), ("ILSVRC2012_val_00000002.JPEG", 999),
                                   ("ILSVRC2012_val_00000003.JPEG", None)]  # not in the file: unlabelled


def test_the_devkit_ground_truth_maps_its_ids_through_meta_mat(tmp_path):
    from scipy.io import savemat

    # the devkit numbers classes by its own ILSVRC2012_ID, not by sorted synset: id 1 is not index 0
    synsets = np.zeros(3, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    for row, (ilsvrc_id, wnid) in enumerate([(1, TOILET_TISSUE), (2, TENCH), (3, GOLDFISH)]):
        synsets[row] = (ilsvrc_id, wnid)
    (tmp_path / "data").mkdir()
    savemat(str(tmp_path / "data" / "meta.mat"), {"synsets": synsets})
    for n in (1, 2):
        image(tmp_path / f"ILSVRC2012_val_0000000{n}.JPEG")
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text("2\n1\n")
    assert labels_of(tmp_path) == [("ILSVRC2012_val_00000001.JPEG", 0), ("ILSVRC2012_val_00000002.JPEG", 999)]
    (tmp_path / "data" / "meta.mat").unlink()
    with pytest.raises(UserError, match="meta.mat"):
        labels_of(tmp_path)


def test_a_labels_file_takes_synsets_or_indices_and_bad_lines_name_file_and_line(tmp_path):
    image(tmp_path / "x.png")
    image(tmp_path / "y.png")
    (tmp_path / "labels.txt").write_text(f"x.png {GOLDFISH}\ny.png 999\n")
    assert labels_of(tmp_path) == [("x.png", 1), ("y.png", 999)]
    (tmp_path / "labels.txt").write_text("x.png n99999999\n")
    with pytest.raises(UserError, match="not one of the 1,000") as err:
        labels_of(tmp_path)
    assert "labels.txt:1" in str(err.value.where)
    (tmp_path / "labels.txt").write_text("x.png 1000\n")
    with pytest.raises(UserError, match="0-999"):
        labels_of(tmp_path)


def test_a_folder_in_no_layout_is_one_clear_error(tmp_path):
    image(tmp_path / "holiday.jpg")
    with pytest.raises(UserError, match="no ImageNet layout"):
        labels_of(tmp_path)
    with pytest.raises(UserError, match="not found"):
        labels_of(tmp_path / "missing")


def test_a_model_reads_the_folder_as_a_dataset(tmp_path):
    from splitbed.models.datasets import load_dataset
    from splitbed.models.registry import get_model

    image(tmp_path / GOLDFISH / "b.jpg")
    (sample,) = load_dataset(f"imagenet-folder:{tmp_path}", get_model("efficientnet_lite0"))
    assert sample.label == 1 and sample.id == f"{GOLDFISH}/b.jpg" and tuple(sample.tensor.shape) == (3, 224, 224)


@pytest.mark.slow
def test_the_disc_benchmark_reports_the_labelled_drop_on_a_users_folder(tmp_path):
    """benchmarks/disc_accuracy.py --dataset imagenet-folder:PATH, quick, one split: the evaluation set
    is the folder's images, split in halves by their bytes, labelled by their synsets."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    rng = np.random.default_rng(0)
    for k in range(12):  # noise images: the halves and labels are what is tested, not the accuracy
        folder = tmp_path / "set" / (TENCH if k % 2 else GOLDFISH)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "disc.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "disc_accuracy.py"), "--quick", "--splits", "block8",
                           "--dataset", f"imagenet-folder:{tmp_path / 'set'}", "--json", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(out.read_text())
    sets = data["evaluation_set"]
    assert sets["tune"]["views"] + sets["report"]["views"] == 12 and min(sets["tune"]["views"], sets["report"]["views"]) > 0
    assert sets["tune"]["labelled_photos"] + sets["report"]["labelled_photos"] == 12
    assert list(data["sources"]) == [f"imagenet-folder:{tmp_path / 'set'}"] and data["rows"]


def test_unreadable_label_files_and_images_are_clear_errors(tmp_path):
    image(tmp_path / "x.png")
    (tmp_path / "labels.txt").write_bytes(b"x.png \xff\xfe\n")
    with pytest.raises(UserError, match="label file"):
        labels_of(tmp_path)
    (tmp_path / "labels.txt").write_text("x.png \u00b2\n")  # a digit to isdigit(), not to int()
    with pytest.raises(UserError, match="0-999"):
        labels_of(tmp_path)
    (tmp_path / "labels.txt").unlink()
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n")
    (tmp_path / "meta.mat").write_bytes(b"not a mat file")
    with pytest.raises(UserError, match="devkit"):
        labels_of(tmp_path)
    from splitbed.models.datasets import folder_of

    with pytest.raises(UserError, match="names no folder"):
        folder_of("imagenet-folder: ")
