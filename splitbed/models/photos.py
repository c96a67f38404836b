"""A natural-photo evaluation set from Debian packages, fetched by one command into the cache.

    sudo .venv/bin/python -m splitbed.models.photos fetch      # apt-get download + extract, ~1 min
    .venv/bin/python -m splitbed.models.photos show            # what the manifest holds

Sources: Tux Paint's default stamps (cut-out photographs of animals, food, vehicles and objects; the
package also holds drawings, told apart by colour richness) and GCompris's photo activities (Qt resource
bundles, read by `rcc_files`). Every photo is written to CACHE/photos/<package>/<path> with a manifest
line: source package and version, licence (from the package's DEP-5 copyright file: the last stanza
whose Files pattern matches), file, sha256, and the ImageNet classes its own name gives where the
reviewed table photo_labels.yaml says so. Nothing here is committed; `fetch` is idempotent.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from splitbed.errors import UserError
from splitbed.host.cache import cache_root

CACHE = cache_root() / "photos"
MANIFEST = "manifest.jsonl"
LABELS = Path(__file__).with_name("photo_labels.yaml")
TUXPAINT = "tuxpaint-stamps-default"
GCOMPRIS = "gcompris-qt-data"
# GCompris activities whose pictures are photographs (their other activities hold drawings)
GCOMPRIS_PHOTO_BUNDLES = ["categorization", "erase", "explore_world_animals", "explore_farm_animals",
                          "explore_monuments"]
# A photograph has many distinct colours for its size; a drawing a few flat ones (checked by eye on
# the tuxpaint stamps: every stamp above both bounds was a photograph)
PHOTO_MIN_COLOURS, PHOTO_MIN_COLOUR_RATIO, PHOTO_MIN_SIDE = 3000, 0.2, 64
# ... except these, found by eye: cartoon folders, and rich-coloured drawings among the seasonal stamps
TUXPAINT_DRAWINGS = {"seasonal/christmas/Santa.png", "seasonal/easter/bunny.png", "seasonal/easter/bunny-egg.png",
                     "seasonal/easter/butterfly.png", "seasonal/easter/chick-hatched.png"}


@dataclass
class Photo:
    id: str  # package/path, unique
    package: str
    version: str
    licence: str
    file: str  # path inside the package (a bundle's own path after '!' for GCompris)
    sha256: str
    labels: list[int]  # acceptable ImageNet classes from the reviewed table; [] = unlabelled

    @property
    def path(self) -> Path:
        return CACHE / self.id


def rcc_files(data: bytes) -> dict[str, bytes]:
    """The files of a Qt binary resource bundle (.rcc): path -> bytes (zlib entries inflated)."""
    magic, version, tree, body, names = struct.unpack(">4sIIII", data[:20])
    if magic != b"qres":
        raise ValueError("not a Qt resource bundle")
    node_size = 22 if version >= 2 else 14

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", data[names + offset : names + offset + 2])
        return data[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}
    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        node = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", data[node : node + 6])
        path = f"{prefix}{name(name_offset)}" if index else ""
        if flags & 2:  # a directory: its children are consecutive nodes
            count, first = struct.unpack(">II", data[node + 6 : node + 14])
            stack += [(child, f"{path}/" if index else "") for child in range(first, first + count)]
            continue
        (offset,) = struct.unpack(">I", data[node + 10 : node + 14])
        (size,) = struct.unpack(">I", data[body + offset : body + offset + 4])
        blob = data[body + offset + 4 : body + offset + 4 + size]
        if flags & 4:  # zstd: no image bundle here uses it
            continue
        files[path] = zlib.decompress(blob[4:]) if flags & 1 else blob
    return files


def copyright_stanzas(text: str) -> list[tuple[list[str], str]]:
    """(Files patterns, License) of a DEP-5 copyright file, in file order."""
    stanzas = []
    for block in text.split("\n\n"):
        files, licence, field = None, None, None
        for line in block.splitlines():
            if line.startswith("Files:"):
                files, field = line[6:].split(), "files"
            elif line.startswith("License:"):
                licence, field = line[8:].strip(), None
            elif line[:1] in (" ", "\t") and field == "files":
                files += line.split()
            elif line and not line[:1].isspace():
                field = None
        if files and licence:
            stanzas.append((files, licence))
    return stanzas


def licence_of(path: str, stanzas: list[tuple[list[str], str]]) -> str:
    """The License of the last stanza whose pattern matches `path` (DEP-5: '*' also matches '/')."""
    found = "unknown"
    for patterns, licence in stanzas:
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
            found = licence
    return found


def looks_like_a_photo(image: Image.Image) -> bool:
    rgba = np.asarray(image.convert("RGBA"))
    opaque = rgba[..., 3] > 200
    count = int(opaque.sum())
    if min(image.size) < PHOTO_MIN_SIDE or count == 0:
        return False
    colours = len(np.unique(rgba[opaque][:, :3].astype(np.int32) @ np.array([65536, 256, 1])))
    return colours >= PHOTO_MIN_COLOURS and colours / count >= PHOTO_MIN_COLOUR_RATIO


def load_label_table() -> dict[str, dict[str, list[int]]]:
    """package -> {file stem -> ImageNet classes}: the reviewed table (only names that say the class)."""
    return yaml.safe_load(LABELS.read_text()) or {}


def labels_for(table: dict, package: str, file: str) -> list[int]:
    """A photo's ImageNet classes by its file name (a bundle's inner name for GCompris), [] if none."""
    return sorted(table.get(package, {}).get(Path(file.split("!", 1)[-1]).stem, []))


def download(package: str, into: Path) -> tuple[Path, str]:
    """The package's files, unpacked (apt-get download + dpkg-deb -x), and its version."""
    done = subprocess.run(["apt-get", "download", package], cwd=into, capture_output=True, text=True)
    debs = list(into.glob(f"{package}_*.deb"))
    if done.returncode or not debs:
        raise UserError(f"apt-get download {package} failed: {done.stderr.strip()[-300:]}",
                        fix="run 'apt-get update' (the package comes from Debian's archive)")
    tree = into / package
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tree)], check=True)
    version = subprocess.run(["dpkg-deb", "-f", str(debs[0]), "Version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    return tree, version


def tuxpaint_photos(tree: Path) -> list[tuple[str, bytes]]:
    root = tree / "usr/share/tuxpaint/stamps"
    found = []
    for path in sorted(root.rglob("*.png")):
        if "cartoon" in path.parts or str(path.relative_to(root)) in TUXPAINT_DRAWINGS:
            continue
        data = path.read_bytes()
        if looks_like_a_photo(Image.open(io.BytesIO(data))):
            found.append((str(path.relative_to(tree)), data))
    return found


def gcompris_photos(tree: Path) -> list[tuple[str, bytes]]:
    found = []
    for bundle in GCOMPRIS_PHOTO_BUNDLES:
        rcc = tree / "usr/share/gcompris-qt/rcc" / f"{bundle}.rcc"
        for inner, data in sorted(rcc_files(rcc.read_bytes()).items()):
            if inner.lower().endswith((".webp", ".jpg", ".jpeg", ".png")):
                found.append((f"{rcc.relative_to(tree)}!{inner}", data))
    return found


def copyright_path(package: str, file: str) -> str:
    """The path a package's copyright file speaks of: the source tree's (GCompris: inside its bundles)."""
    if package == GCOMPRIS:
        return file.split("!", 1)[1].removeprefix("gcompris/")
    return file.removeprefix("usr/share/tuxpaint/")


def fetch(cache: Path = CACHE) -> list[Photo]:
    """Download, pick and write every photo, then the manifest (written last: its presence = complete)."""
    table = load_label_table()
    photos, seen = [], set()
    with tempfile.TemporaryDirectory(prefix="splitbed-photos-") as tmp:
        for package, pick in ((TUXPAINT, tuxpaint_photos), (GCOMPRIS, gcompris_photos)):
            tree, version = download(package, Path(tmp))
            stanzas = copyright_stanzas((tree / "usr/share/doc" / package / "copyright").read_text())
            for file, data in pick(tree):
                digest = hashlib.sha256(data).hexdigest()
                if digest in seen:  # the same picture twice in a package counts once
                    continue
                seen.add(digest)
                inner = file.split("!", 1)[-1]
                photo = Photo(f"{package}/{inner.replace('/', '__')}", package, version,
                              licence_of(copyright_path(package, file), stanzas), file, digest,
                              labels_for(table, package, file))
                target = cache / photo.id
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                photos.append(photo)
            shutil.rmtree(tree)
    (cache / MANIFEST).write_text("".join(json.dumps(asdict(p)) + "\n" for p in photos))
    return photos


def load_manifest(cache: Path = CACHE) -> list[Photo]:
    path = cache / MANIFEST
    if not path.exists():
        raise UserError("the photo evaluation set is not fetched",
                        fix="sudo .venv/bin/python -m splitbed.models.photos fetch (or 'make photos')")
    photos = [Photo(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    table = load_label_table()
    for photo in photos:  # labels from the table as it is now (it may have been reviewed since the fetch)
        photo.labels = labels_for(table, photo.package, photo.file)
        if not (cache / photo.id).exists():
            raise UserError(f"{cache / photo.id} is missing", where=str(path), fix="fetch the photos again: make photos")
    return photos


def half_of(sha256: str) -> str:
    """'tune' or 'report': a fixed half of the photos, by content, so every view of a photo and every
    run agree (choices are made on 'tune', numbers reported on 'report')."""
    return "tune" if int(sha256[:8], 16) % 2 == 0 else "report"


def summary(photos: list[Photo]) -> dict:
    by_source: dict[str, dict] = {}
    for photo in photos:
        row = by_source.setdefault(f"{photo.package} {photo.version}",
                                   {"photos": 0, "labelled": 0, "tune": 0, "licences": {}})
        row["photos"] += 1
        row["labelled"] += bool(photo.labels)
        row["tune"] += half_of(photo.sha256) == "tune"
        row["licences"][photo.licence] = row["licences"].get(photo.licence, 0) + 1
    return by_source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["fetch", "show"])
    args = parser.parse_args()
    photos = fetch() if args.action == "fetch" else load_manifest()
    for source, row in summary(photos).items():
        print(f"{source}: {row['photos']} photos ({row['tune']} in the tuning half), {row['labelled']} labelled, "
              f"licences {row['licences']}")
    print(f"{len(photos)} photos in {CACHE}")
    return 0


if __name__ == "__main__":
    from splitbed.errors import run_reporting_user_errors

    sys.exit(run_reporting_user_errors(main))
