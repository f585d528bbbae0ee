"""Generic pix2pix-style paired data: aligned `<split>/*.jpg` (A left | B right) or `A/<split>/` + `B/<split>/`.

Both images of a pair are resized to size x size (bicubic, no crop), as pix2pix's own `resize` preprocessing.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from falcli.errors import FalError
from falcli.formats.archive import Source, open_source
from falcli.formats.images import IMAGE_SUFFIXES, decode_image, resize, to_array
from falcli.formats.store import DatasetWriter, Progress, created_by, write_split

SPLITS = ("train", "val", "test")
DIRECTIONS = {"a_to_b": ["a", "b"], "b_to_a": ["b", "a"]}
FIELD_CHANNELS = {"a": 3, "b": 3}  # what translation builds its networks for before the data is prepared
_EXT = "|".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
_ALIGNED = re.compile(rf"^(?P<split>train|val|test)/(?P<stem>[^/]+)\.(?i:{_EXT})$")
_UNALIGNED = re.compile(rf"^(?P<side>A|B)/(?P<split>train|val|test)/(?P<stem>[^/]+)\.(?i:{_EXT})$")
Entry = tuple[str, tuple[str, ...]]  # (name, members): one A|B member, or the A and B members


def _natural(stem: str) -> tuple[int, int, str]:
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def _strip_top_folder(names: list[str]) -> tuple[str, list[str]]:
    """Archives usually wrap everything in one folder (facades/train/...): look inside it."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    if len(tops) == 1 and all("/" in n for n in names):
        top = tops.pop() + "/"
        return top, [n[len(top):] for n in names]
    return "", names


def _aligned_pairs(names: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Per split: (stem, member) of A|B images, in natural order."""
    pairs: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        match = _ALIGNED.match(name)
        if match:
            pairs.setdefault(match["split"], []).append((match["stem"], name))
    return {split: sorted(items, key=lambda p: _natural(p[0])) for split, items in pairs.items()}


def _unaligned_pairs(source: Source, prefix: str, names: list[str]) -> dict[str, list[tuple[str, str, str]]]:
    """Per split: (stem, A member, B member), matched by file stem."""
    sides: dict[tuple[str, str], dict[str, str]] = {}
    for name in names:
        match = _UNALIGNED.match(name)
        if match:
            found = sides.setdefault((match["side"], match["split"]), {})
            if match["stem"] in found:
                raise FalError(f"{source.where(prefix + name)}: two files named {match['stem']}.* in the same "
                               "folder; keep one")
            found[match["stem"]] = name
    pairs: dict[str, list[tuple[str, str, str]]] = {}
    for split in SPLITS:
        a, b = sides.get(("A", split), {}), sides.get(("B", split), {})
        lonely = sorted(a.keys() ^ b.keys())
        if lonely:
            stem = lonely[0]
            have, lack = ("A", "B") if stem in a else ("B", "A")
            shown = source.where(prefix + (a.get(stem) or b[stem]))
            raise FalError(f"{shown}: no {lack}/{split}/{stem}.* to pair it with ({len(lonely)} unmatched names "
                           f"in {have}/{split} vs {lack}/{split}); A and B need identical names")
        if a:
            pairs[split] = sorted(((s, a[s], b[s]) for s in a), key=lambda p: _natural(p[0]))
    return pairs


def _find_pairs(source: Source, names: list[str]) -> tuple[str, dict[str, list[Entry]]]:
    """(layout, entries per split); looks inside a single wrapping top folder when nothing matches at the top."""
    for prefix, relative in (("", names), _strip_top_folder(names)):
        unaligned = _unaligned_pairs(source, prefix, relative)
        if unaligned:
            return "A/ and B/ folders", {split: [(stem, (prefix + a, prefix + b)) for stem, a, b in items]
                                         for split, items in unaligned.items()}
        aligned = _aligned_pairs(relative)
        if aligned:
            return "aligned A|B", {split: [(stem, (prefix + m,)) for stem, m in items]
                                   for split, items in aligned.items()}
    return "", {}


def _aligned_item(source: Source, member: str, size: int) -> dict[str, np.ndarray]:
    image = decode_image(source.read(member), source.where(member))
    width, height = image.size
    if width % 2:
        raise FalError(f"{source.where(member)}: width {width} is odd; aligned pix2pix images are A | B side by "
                       "side, two halves of equal width")
    half = width // 2
    return {"a": to_array(resize(image.crop((0, 0, half, height)), size, "bicubic")),
            "b": to_array(resize(image.crop((half, 0, width, height)), size, "bicubic"))}


def _unaligned_item(source: Source, a_member: str, b_member: str, size: int) -> dict[str, np.ndarray]:
    a = decode_image(source.read(a_member), source.where(a_member))
    b = decode_image(source.read(b_member), source.where(b_member))
    if a.size != b.size:
        raise FalError(f"{source.where(a_member)} is {a.size[0]}x{a.size[1]} but {source.where(b_member)} is "
                       f"{b.size[0]}x{b.size[1]}; the two images of a pair must have the same size")
    return {"a": to_array(resize(a, size, "bicubic")), "b": to_array(resize(b, size, "bicubic"))}


def prepare_pix2pix(raw: Path, out: Path, size: int = 256, progress: Progress | None = None) -> Path:
    """Prepare a pix2pix-style folder or archive (aligned A|B, or A/ + B/) as paired fields `a`, `b`."""
    with open_source(Path(raw)) as source:
        layout, splits = _find_pairs(source, source.names())
        if not splits:
            raise FalError(f"{raw}: no pix2pix images; expected <split>/*.jpg (A | B side by side) or "
                           "A/<split>/ and B/<split>/ with identical names, split in train, val, test")
        if not {"val", "test"} & set(splits):  # a train-only set could never draw sample pictures or be scored
            raise FalError(f"{raw}: only a {', '.join(sorted(splits))} split; fal draws sample pictures and "
                           f"evaluations from val/ (or test/): add one with a few pairs")
        meta = {"size": size, "created_by": created_by("pix2pix", size=size), "layout": layout,
                "directions": DIRECTIONS, "default_direction": "a_to_b",
                "resize_filter": {"a": "bicubic", "b": "bicubic"}}
        fields = {"a": ((size, size, 3), "uint8"), "b": ((size, size, 3), "uint8")}

        def item(entry: Entry) -> dict[str, np.ndarray]:
            members = entry[1]
            if len(members) == 1:
                return _aligned_item(source, members[0], size)
            return _unaligned_item(source, members[0], members[1], size)

        with DatasetWriter(out, "paired", "pix2pix", meta) as writer:
            for split in (s for s in SPLITS if s in splits):
                write_split(writer, split, fields, splits[split], item, [e[0] for e in splits[split]],
                            progress, f"pix2pix {split}")
    return out
