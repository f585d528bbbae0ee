"""CelebA (img_align_celeba) and arbitrary image folders as `images` datasets of size x size RGB.

CelebA uses the DCGAN-era crop: the centred 108x108 box of the 178x218 aligned faces, then PIL bicubic resize.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from falcli.errors import FalError
from falcli.formats.archive import DirSource, Source, open_source
from falcli.formats.images import IMAGE_SUFFIXES, Box, center_box, crop_resize, decode_image, square_box
from falcli.formats.store import DatasetWriter, Progress, created_by

CROP = 108
RESIZE_FILTER = "bicubic"
FOLDER = "img_align_celeba"
PARTITION_FILES = ("list_eval_partition.txt", "list_eval_partition.csv")  # official, Kaggle mirror
PARTITION_SPLITS = {"0": "train", "1": "val", "2": "test"}
DOWNLOAD_HINT = ("download img_align_celeba.zip (and Eval/list_eval_partition.txt) from "
                 "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html")
_MEMBER = re.compile(rf"^{FOLDER}/(?P<file>[^/]+\.(?i:jpg|jpeg|png))$")


def _locate(raw: Path) -> tuple[Source, list[Path]]:
    """The image source (members named img_align_celeba/<file>) and the folders that may hold the partition.

    Accepts the zip or the images' folder themselves, or a folder above them as downloads lay them out: the
    official Drive copy (CelebA/Img/img_align_celeba.zip, CelebA/Eval/list_eval_partition.txt) and Kaggle's
    (img_align_celeba/img_align_celeba/*.jpg, list_eval_partition.csv at the top).
    """
    if raw.is_file():
        return open_source(raw), _partition_folders(raw.parent)
    if not raw.is_dir():
        raise FalError(f"{raw}: no such file or folder; {DOWNLOAD_HINT}")
    for zipped in (raw / f"{FOLDER}.zip", raw / "Img" / f"{FOLDER}.zip"):
        if zipped.is_file():
            return open_source(zipped), _partition_folders(zipped.parent)
    for folder in (raw / FOLDER / FOLDER, raw / FOLDER, raw / "Img" / FOLDER):
        if folder.is_dir():
            return DirSource(folder, prefix=FOLDER), _partition_folders(folder)
    return DirSource(raw, prefix=FOLDER), _partition_folders(raw)


def _partition_folders(start: Path) -> list[Path]:
    """Where list_eval_partition may be: `start` and two folders up, each also with its Eval/ subfolder."""
    folders = []
    for folder in [start, *start.parents][:3]:
        folders += [folder, folder / "Eval"]
    return folders


def read_partition(path: Path) -> dict[str, str]:
    """File name -> split from list_eval_partition (`<name> <0|1|2>`, or the Kaggle CSV `name,0`)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FalError(f"{path}: unreadable ({e})") from e
    partition = {}
    for number, line in enumerate(lines, 1):
        fields = line.replace(",", " ").split()
        if not fields or (number == 1 and fields == ["image_id", "partition"]):
            continue
        if len(fields) != 2 or fields[1] not in PARTITION_SPLITS:
            raise FalError(f"{path}:{number}: expected '<image name> <0|1|2>', got {line.strip()[:60]!r}")
        partition[fields[0]] = PARTITION_SPLITS[fields[1]]
    return partition


def _write_images(writer: DatasetWriter, source: Source, splits: dict[str, list[str]], size: int,
                  box_of: Callable[[str, int, int], Box], progress: Progress | None, description: str) -> None:
    """Decode, crop (box_of(where, width, height)) and resize every member into `images` of its split."""
    arrays = {split: writer.create(split, "images", (len(members), size, size, 3), "uint8")
              for split, members in splits.items()}
    slots = {member: (split, i) for split, members in splits.items() for i, member in enumerate(members)}
    total = len(slots)
    if progress:
        progress(description, 0, total)
    # iter_read may reorder (archive order for tars), so each image goes to its own slot
    for done, (member, data) in enumerate(source.iter_read(list(slots)), 1):
        image = decode_image(data, source.where(member))
        split, i = slots[member]
        arrays[split][i] = crop_resize(image, box_of(source.where(member), *image.size), size, RESIZE_FILTER)
        if progress:
            progress(description, done, total)


def prepare_celeba(raw: Path, out: Path, size: int = 64, progress: Progress | None = None) -> Path:
    """Prepare CelebA from img_align_celeba.zip or its unpacked folder (splits from list_eval_partition)."""
    source, folders = _locate(Path(raw))
    with source:
        files = {m["file"]: name for name in source.names() if (m := _MEMBER.match(name))}
        if not files:
            raise FalError(f"{source.label}: no {FOLDER}/*.jpg images; {DOWNLOAD_HINT}")
        partition_file = next((f / p for f in folders for p in PARTITION_FILES if (f / p).is_file()), None)
        if partition_file is None:
            assignment = {file: "train" for file in files}
        else:
            partition = read_partition(partition_file)
            missing = sorted(set(files) - set(partition))
            if missing:
                raise FalError(f"{source.where(files[missing[0]])}: not listed in {partition_file} "
                               f"({len(missing)} images are not); use the partition file of the same download")
            assignment = {file: partition[file] for file in files}
        order = [s for s in ("train", "val", "test") if s in assignment.values()]
        splits = {split: sorted(f for f in files if assignment[f] == split) for split in order}
        first: dict[str, tuple[int, int]] = {}

        def box_of(where: str, width: int, height: int) -> Box:
            # one exact crop box for the whole dataset, so every image must share the first one's size
            if not first:
                first["size"] = (width, height)
                box = center_box(width, height, CROP, CROP, where)
                writer.meta["crop"] = (f"center {CROP}x{CROP} at ({box[0]},{box[1]}) of {width}x{height} "
                                       f"(box left,top,right,bottom = {','.join(map(str, box))})")
                writer.meta["crop_box"] = list(box)
            reference = first["size"]
            if (width, height) != reference:
                raise FalError(f"{where}: {width}x{height} but the other images are {reference[0]}x{reference[1]}; "
                               f"{FOLDER} images are all 178x218")
            return center_box(width, height, CROP, CROP, where)

        meta = {"size": size, "created_by": created_by("celeba", size=size), "resize_filter": RESIZE_FILTER,
                "partition": str(partition_file) if partition_file else "none (all images in train)"}
        with DatasetWriter(out, "images", "celeba", meta) as writer:
            _write_images(writer, source, {s: [files[f] for f in fs] for s, fs in splits.items()}, size,
                          box_of, progress, "celeba")
            for split, fs in splits.items():
                writer.set_names(split, [f.rsplit(".", 1)[0] for f in fs])
    return out


def prepare_image_folder(folder: Path, out: Path, size: int = 64, progress: Progress | None = None) -> Path:
    """Prepare any folder (or archive) of images: centre square crop, bicubic resize, all in `train`."""
    with open_source(Path(folder)) as source:
        members = [n for n in source.names() if n.lower().endswith(IMAGE_SUFFIXES)]
        if not members:
            raise FalError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found; pass a folder of images")
        meta = {"size": size, "created_by": created_by("images", size=size), "resize_filter": RESIZE_FILTER,
                "crop": "center square of each image (side = its shorter side)"}
        with DatasetWriter(out, "images", "images", meta) as writer:
            _write_images(writer, source, {"train": members}, size, lambda _, w, h: square_box(w, h),
                          progress, "images")
            stems = [m.rsplit(".", 1)[0] for m in members]
            clash = next((m for m, stem in zip(members, stems) if stems.count(stem) > 1), None)
            # Names match samples to references later; a.png and a.jpg would both be "a": keep the suffix then.
            writer.set_names("train", members if clash else stems)
    return out

