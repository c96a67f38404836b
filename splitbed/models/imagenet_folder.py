"""A labelled ImageNet folder of the user's own (`dataset: imagenet-folder:PATH`), in the layouts it ships in.

The label of an image is the index of its synset among the 1,000 ILSVRC-2012 synsets in sorted order
(imagenet_synsets.txt, as timm ships it; the order torchvision's and Keras' ImageNet models predict in),
so a folder of a few classes gets the same indices as the whole set. Layouts, tried in this order:
- a flat validation folder with a label file beside the images:
  `LOC_val_solution.csv` (Kaggle: `ImageId,PredictionString`, the synset first),
  `ILSVRC2012_validation_ground_truth.txt` (the devkit's: one ILSVRC2012_ID per line for
  ILSVRC2012_val_00000001, 2, ...; its IDs are mapped to synsets by the devkit's `meta.mat`, found beside
  it or in a `data/` folder beside it), or `labels.txt` (`filename synset` or `filename index` per line);
- class folders named by synset (`PATH/n01440764/*.JPEG`, the training layout and the usual validation
  layout);
- a flat folder whose file names start with the synset (`n01440764_10026.JPEG`).
An image whose synset is not one of the 1,000 is an error naming it; an image without a label is read
unlabelled only in the label-file layouts (a label file may cover part of a folder).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from splitbed.errors import UserError

SYNSETS_FILE = Path(__file__).resolve().parent / "imagenet_synsets.txt"
SYNSET = re.compile(r"n[0-9]{8}")
INDEX = re.compile(r"[0-9]{1,4}")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
VAL_NAME = re.compile(r"ILSVRC2012_val_([0-9]{8})")


def synset_indices() -> dict[str, int]:
    synsets = [line.strip() for line in SYNSETS_FILE.read_text().splitlines() if line.strip()]
    return {s: i for i, s in enumerate(synsets)}


def read_text(path: Path) -> str:
    """A label file's text; an unreadable or non-UTF-8 file is a UserError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read the label file ({err})", where=str(path), fix="a UTF-8 text file") from err


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def index_of(synset: str, indices: dict[str, int], where: str) -> int:
    if synset not in indices:
        raise UserError(f"{synset!r} is not one of the 1,000 ILSVRC-2012 synsets", where=where,
                        fix="a synset id such as n01440764 (see splitbed/models/imagenet_synsets.txt)")
    return indices[synset]


def kaggle_labels(path: Path, indices: dict[str, int]) -> dict[str, int]:
    labels = {}
    rows = csv.reader(read_text(path).replace("\0", "").splitlines())
    header = next(rows, None)
    if header != ["ImageId", "PredictionString"]:
        raise UserError(f"expected the header ImageId,PredictionString, got {header}", where=f"{path}:1")
    for number, row in enumerate(rows, 2):
        if len(row) != 2 or not row[1].split():
            raise UserError(f"expected 'ImageId,SYNSET ...', got {','.join(row)!r}", where=f"{path}:{number}")
        labels[row[0]] = index_of(row[1].split()[0], indices, f"{path}:{number}")
    return labels


def devkit_synsets(ground_truth: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> synset, from the devkit's meta.mat."""
    for meta in (ground_truth.parent / "meta.mat", ground_truth.parent / "data" / "meta.mat"):
        if meta.is_file():
            from scipy.io import loadmat  # only for this layout

            try:
                synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
                return {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
            except Exception as err:  # scipy's MatReadError and the rest: a file that is not the devkit's
                raise UserError(f"not the ILSVRC-2012 devkit's meta.mat ({err})", where=str(meta)) from err
    raise UserError("the devkit's ground truth numbers classes by ILSVRC2012_ID; their synsets are in its meta.mat",
                    where=str(ground_truth), fix="put the devkit's data/meta.mat beside the ground-truth file")


def devkit_labels(path: Path, folder: Path, indices: dict[str, int]) -> dict[str, int]:
    ids = devkit_synsets(path)
    by_number = {}
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not INDEX.fullmatch(line.strip()) or int(line) not in ids:
            raise UserError(f"expected an ILSVRC2012_ID (1-1000), got {line!r}", where=f"{path}:{number}")
        by_number[number] = index_of(ids[int(line)], indices, f"{path}:{number}")
    labels = {}
    for image in images_in(folder):
        match = VAL_NAME.match(image.name)
        if match and int(match.group(1)) in by_number:
            labels[image.name] = by_number[int(match.group(1))]
    return labels


def text_labels(path: Path, indices: dict[str, int]) -> dict[str, int]:
    labels = {}
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{path}:{number}"
        if len(parts) != 2 or not (SYNSET.fullmatch(parts[1]) or INDEX.fullmatch(parts[1]) and int(parts[1]) < len(indices)):
            raise UserError(f"expected 'filename synset' or 'filename index' (0-999), got {line!r}", where=where)
        labels[parts[0]] = index_of(parts[1], indices, where) if SYNSET.fullmatch(parts[1]) else int(parts[1])
    return labels


def labelled_images(folder: Path) -> Iterator[tuple[Path, int | None, str]]:
    """(image, label or None, id) in the folder's layout (see the module docstring)."""
    if not folder.is_dir():
        raise UserError("dataset folder not found", where=str(folder), fix="give imagenet-folder:PATH, a folder")
    indices = synset_indices()
    files = {"LOC_val_solution.csv": kaggle_labels, "labels.txt": text_labels}
    for name, read in files.items():
        if (folder / name).is_file():
            labels = read(folder / name, indices)
            yield from ((p, labels.get(p.name, labels.get(p.stem)), p.name) for p in images_in(folder))
            return
    if (folder / "ILSVRC2012_validation_ground_truth.txt").is_file():
        labels = devkit_labels(folder / "ILSVRC2012_validation_ground_truth.txt", folder, indices)
        yield from ((p, labels.get(p.name), p.name) for p in images_in(folder))
        return
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and SYNSET.fullmatch(p.name))
    if classes:
        for cls in classes:
            label = index_of(cls.name, indices, str(cls))
            yield from ((p, label, f"{cls.name}/{p.name}") for p in images_in(cls))
        return
    flat = images_in(folder)
    if flat and all(SYNSET.match(p.name) for p in flat):
        yield from ((p, index_of(SYNSET.match(p.name).group(0), indices, str(p)), p.name) for p in flat)
        return
    raise UserError("no ImageNet layout found: no label file (LOC_val_solution.csv, "
                    "ILSVRC2012_validation_ground_truth.txt, labels.txt), no synset-named class folders, "
                    "no synset-prefixed file names", where=str(folder),
                    fix="see docs/models-and-datasets.md for the layouts imagenet-folder reads")


def read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as err:
        raise UserError(f"cannot read the image ({err})", where=str(path)) from err
