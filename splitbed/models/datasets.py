"""Datasets that ship offline, by name; each yields (input tensor, label or None, id).

- imagenet-samples: foolbox's 20 labelled ImageNet photos (label in the file name), then deterministic
  augmented views (seeded crops, flips, scales, brightness) of those and of the other real photos that
  ship in scikit-image and scikit-learn, unlabelled: an agreement set of a few hundred inputs.
- imagenet-photos: foolbox's 20 and the Debian photos of models/photos.py (fetched once into the
  cache), each as PHOTO_VIEWS views (the whole photo, then seeded augmented views); see photo_views().
- fashion-mnist-test / fashion-mnist-train: Debian's dataset-fashion-mnist (10k / 60k, labelled).
- folder:PATH: a user folder in ImageFolder layout (one sub-folder per class, sorted names = indices)
  or a flat folder of images with a label file (`labels.txt`: one "filename index" per line).
- imagenet-folder:PATH: a labelled ImageNet folder in the layouts it ships in, labelled with the
  ILSVRC-2012 class indices whatever classes it holds (imagenet_folder.py).
Everything is read by path: nothing is downloaded, foolbox/skimage/sklearn are not imported.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from splitbed.errors import UserError
from splitbed.models.imagenet_folder import labelled_images, read_image
from splitbed.models.partition import SplitModel
from splitbed.models.photos import half_of, load_manifest

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# Real photographs that ship with scikit-image (some grey) and scikit-learn; drawings and charts left out.
SKIMAGE_PHOTOS = [
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png",
    "coins.png", "moon.png", "brick.png", "grass.png", "gravel.png",
]
SKLEARN_PHOTOS = ["china.jpg", "flower.jpg"]
VIEWS_PER_PHOTO = 12
PHOTO_VIEWS = 3
FOOLBOX_PREFIX = "pypi:foolbox/"  # photo id of a foolbox sample: the prefix, then its file name
DATASET_NAMES = ["imagenet-samples", "imagenet-photos", "fashion-mnist-test", "fashion-mnist-train", "folder:PATH",
                 "imagenet-folder:PATH"]


@dataclass
class Sample:
    tensor: torch.Tensor
    label: int | None
    id: str

    def __iter__(self):  # unpacks as (tensor, label, id)
        return iter((self.tensor, self.label, self.id))


def package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {package} is not installed", fix=install_hint)
    return Path(spec.submodule_search_locations[0])


def labelled_imagenet_photos() -> list[tuple[Path, int]]:
    folder = package_dir("foolbox", "run 'sudo make setup' (pip install --no-deps foolbox==3.3.4)") / "data"
    photos = sorted(folder.glob("imagenet_*.jpg"))
    return [(path, int(path.stem.rsplit("_", 1)[1])) for path in photos]


def unlabelled_photos() -> list[Path]:
    skimage = package_dir("skimage", "run 'sudo make setup'") / "data"
    sklearn = package_dir("sklearn", "run 'sudo make setup'") / "datasets" / "images"
    paths = [skimage / name for name in SKIMAGE_PHOTOS] + [sklearn / name for name in SKLEARN_PHOTOS]
    return [path for path in paths if path.exists()]


def augmented_view(image: Image.Image, rng: random.Random) -> Image.Image:
    """A random but seeded crop (50-100% of the short side), maybe mirrored, brightness 0.8-1.2."""
    image = image.convert("RGB")
    width, height = image.size
    side = int(min(width, height) * rng.uniform(0.5, 1.0))
    left, top = rng.randint(0, width - side), rng.randint(0, height - side)
    view = image.crop((left, top, left + side, top + side))
    if rng.random() < 0.5:
        view = ImageOps.mirror(view)
    return ImageEnhance.Brightness(view).enhance(rng.uniform(0.8, 1.2))


def imagenet_samples(model: SplitModel, seed: int = 0, views: int = VIEWS_PER_PHOTO,
                     labelled: bool = True, others: bool = True) -> Iterator[Sample]:
    """foolbox's labelled photos (if `labelled`), then seeded views of those and, if `others`, of the
    unlabelled photos."""
    photos = labelled_imagenet_photos()
    if labelled:
        for path, label in photos:
            yield Sample(model.preprocess(Image.open(path)), label, path.stem)
    sources = ([p for p, _ in photos] if labelled else []) + (unlabelled_photos() if others else [])
    for path in sources:
        rng = random.Random(f"{seed}:{path.name}")
        image = Image.open(path)
        image.load()
        for k in range(views):
            yield Sample(model.preprocess(augmented_view(image, rng)), None, f"{path.stem}#view{k}")


@dataclass
class PhotoView:
    """One view of one photo of the evaluation set; `photo` is the unit that never straddles halves."""

    tensor: torch.Tensor
    labels: tuple[int, ...]  # acceptable ImageNet classes; () = unlabelled
    photo: str
    half: str  # "tune" or "report"
    id: str


def on_white(image: Image.Image) -> Image.Image:
    """A cut-out photo (transparent background) on white, as a product photo is shown."""
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.split()[3])
        return flat
    return image.convert("RGB")


def photo_views(model: SplitModel, views: int = PHOTO_VIEWS, seed: int = 0, half: str | None = None) -> list[PhotoView]:
    """Every photo of the evaluation set (foolbox's + the fetched Debian ones), as `views` views each;
    only those of one half if `half` is given."""
    sources = [(path, (label,), FOOLBOX_PREFIX + path.name, hashlib.sha256(path.read_bytes()).hexdigest())
               for path, label in labelled_imagenet_photos()]
    sources += [(p.path, tuple(p.labels), p.id, p.sha256) for p in load_manifest()]
    out = []
    for path, labels, photo, digest in sources:
        its_half = half_of(digest)
        if half not in (None, its_half):
            continue
        image = on_white(Image.open(path))
        rng = random.Random(f"{seed}:{digest}")
        for k in range(views):
            view = image if k == 0 else augmented_view(image, rng)
            out.append(PhotoView(model.preprocess(view), labels, photo, its_half, f"{photo}#view{k}"))
    return out


def folder_of(name: str) -> Path:
    """The folder of a dataset name `KIND:PATH`; an empty PATH is an error, not this directory."""
    path = name.split(":", 1)[1].strip()
    if not path:
        raise UserError(f"dataset {name!r} names no folder", fix=f"give {name}PATH")
    return Path(path)


def folder_views(model: SplitModel, folder: Path) -> list[PhotoView]:
    """A user's labelled ImageNet folder (imagenet-folder:PATH) as the evaluation set's views: one view
    per image, each in the half its bytes hash to, as the photos are (photos.half_of)."""
    out = []
    for path, label, id_ in labelled_images(folder):
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as err:
            raise UserError(f"cannot read the image ({err})", where=str(path)) from err
        out.append(PhotoView(model.preprocess(read_image(path)), () if label is None else (label,), id_,
                             half_of(digest), id_))
    return out


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip'd) as used by MNIST/Fashion-MNIST: magic, dims, big-endian sizes, uint8 data."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise UserError(f"cannot read Fashion-MNIST file: {err}", where=str(path),
                        fix="install Debian's dataset-fashion-mnist ('sudo make setup')") from err
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise UserError("not an IDX uint8 file", where=str(path))
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserError(f"IDX body has {body.size} bytes, header says {dims}", where=str(path))
    return body.reshape(dims)


def fashion_mnist_arrays(part: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "t10k" if part == "test" else "train"
    images = read_idx(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz")
    return images, labels


def fashion_mnist(model: SplitModel, part: str) -> Iterator[Sample]:
    images, labels = fashion_mnist_arrays(part)
    for i in range(len(images)):
        yield Sample(model.preprocess(images[i]), int(labels[i]), f"fmnist-{part}-{i}")


def user_folder(model: SplitModel, folder: Path) -> Iterator[Sample]:
    if not folder.is_dir():
        raise UserError("dataset folder not found", where=str(folder),
                        fix="give folder:PATH with class sub-folders or images plus labels.txt")
    label_file = folder / "labels.txt"
    if label_file.exists():
        labels = {}
        for number, line in enumerate(label_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise UserError(f"expected 'filename class_index', got {line!r}", where=f"{label_file}:{number}")
            labels[parts[0]] = int(parts[1])
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files:
            yield Sample(model.preprocess(Image.open(path)), labels.get(path.name), path.name)
        return
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise UserError("no class sub-folders and no labels.txt", where=str(folder),
                        fix="use ImageFolder layout (folder/CLASS/*.jpg) or add labels.txt")
    for index, cls in enumerate(classes):
        for path in sorted((folder / cls).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield Sample(model.preprocess(Image.open(path)), index, f"{cls}/{path.name}")


def load_dataset(name: str, model: SplitModel, seed: int = 0) -> Iterator[Sample]:
    """Samples of dataset `name`, preprocessed for `model`."""
    if name == "imagenet-samples":
        return imagenet_samples(model, seed)
    if name == "imagenet-photos":
        return (Sample(v.tensor, v.labels[0] if len(v.labels) == 1 else None, v.id) for v in photo_views(model))
    if name in ("fashion-mnist-test", "fashion-mnist-train"):
        return fashion_mnist(model, name.rsplit("-", 1)[1])
    if name.startswith("folder:"):
        return user_folder(model, Path(name.split(":", 1)[1]))
    if name.startswith("imagenet-folder:"):
        return (Sample(model.preprocess(read_image(path)), label, id_)
                for path, label, id_ in labelled_images(folder_of(name)))
    raise UserError(f"unknown dataset {name!r}", fix=f"choose one of: {', '.join(DATASET_NAMES)}")


CALIBRATION_TRAIN_IMAGES = 2000


def calibration_samples(model: SplitModel) -> Iterator[Sample]:
    """Unlabelled inputs for fitting codecs, disjoint from evaluation_samples():
    for ImageNet models the views of the photos that are not foolbox's labelled ones, for
    Fashion-MNIST the first images of the training set."""
    if model.default_dataset == "fashion-mnist-test":
        return itertools.islice(fashion_mnist(model, "train"), CALIBRATION_TRAIN_IMAGES)
    if model.default_dataset != "imagenet-samples":
        raise UserError(f"no calibration set defined for {model.name}'s dataset {model.default_dataset}")
    return imagenet_samples(model, labelled=False)


def evaluation_samples(model: SplitModel) -> Iterator[Sample]:
    """What codecs are scored on: the 10k test set, or foolbox's 20 labelled photos and their views."""
    if model.default_dataset == "fashion-mnist-test":
        return fashion_mnist(model, "test")
    if model.default_dataset != "imagenet-samples":
        return load_dataset(model.default_dataset, model)
    return imagenet_samples(model, others=False)


def batches(samples: Iterator[Sample], size: int) -> Iterator[tuple[torch.Tensor, list[int | None], list[str]]]:
    """Group samples into (stacked tensor, labels, ids) batches."""
    chunk: list[Sample] = []
    for sample in samples:
        chunk.append(sample)
        if len(chunk) == size:
            yield torch.stack([s.tensor for s in chunk]), [s.label for s in chunk], [s.id for s in chunk]
            chunk = []
    if chunk:
        yield torch.stack([s.tensor for s in chunk]), [s.label for s in chunk], [s.id for s in chunk]
