"""Read raw inputs from a zip, a tar(.gz/.bz2/.xz) or an unpacked folder through one interface.

Members are read in place. Archives holding links, devices, absolute paths or `..` members are refused
outright (tar slip, CVE-2007-4559), even though we never extract them with tarfile/zipfile.
"""
from __future__ import annotations

import os
import re
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Iterable, Iterator

from falcli.errors import FalError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# macOS zip tools add these resource-fork copies; they look like images but are not.
_JUNK = re.compile(r"(^|/)(__MACOSX/|\._)")


def is_archive(path: Path) -> bool:
    """True when `path` names a file with an archive suffix (.zip, .tar, .tar.gz, .tgz, ...)."""
    name = Path(path).name.lower()
    return Path(path).is_file() and name.endswith(ARCHIVE_SUFFIXES)


def safe_member_name(name: str, archive: str) -> str:
    """Normalise an archive member name; FalError for absolute paths and `..` components."""
    clean = name.replace("\\", "/")
    while clean.startswith("./"):
        clean = clean[2:]
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean) or ".." in PurePosixPath(clean).parts:
        raise FalError(f"{archive}: unsafe member {name!r} (absolute path or '..'); refusing this archive, "
                       "get a clean copy of the download")
    return clean


class Source:
    """A read-only tree of files: `names()` lists them (posix, relative), `read(name)` returns bytes."""

    label: str

    def names(self) -> list[str]:
        """Sorted relative posix paths of all regular files."""
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        """The bytes of member `name` (FalError when missing or unreadable)."""
        raise NotImplementedError

    def has(self, name: str) -> bool:
        """Whether member `name` exists."""
        return name in self._index()

    def where(self, name: str) -> str:
        """How to name member `name` in messages: `archive.zip:member` or `folder/member`."""
        return f"{self.label}:{name}"

    def iter_read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield `(name, bytes)` for `names`, in whatever order reads fastest (archive order for tars)."""
        for name in names:
            yield name, self.read(name)

    def close(self) -> None:
        """Release the underlying file handle."""

    def _index(self) -> set[str]:
        if not hasattr(self, "_names_set"):
            self._names_set = set(self.names())
        return self._names_set

    def _missing(self, name: str) -> FalError:
        return FalError(f"{self.where(name)}: no such file in {self.label}; is the download complete?")

    def __enter__(self) -> Source:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class DirSource(Source):
    """An unpacked folder; `prefix` is prepended to every name (to look like the archive's top folder)."""

    def __init__(self, root: Path, prefix: str = "") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FalError(f"{self.root}: no such folder")
        self.prefix = prefix.rstrip("/") + "/" if prefix else ""
        self.label = str(self.root)
        self._listing: list[str] | None = None

    def names(self) -> list[str]:
        if self._listing is None:
            found = []
            # followlinks: users often symlink dataset folders from another disk
            for folder, _, files in os.walk(self.root, followlinks=True):
                rel = Path(folder).relative_to(self.root).as_posix()
                base = "" if rel == "." else rel + "/"
                found += [self.prefix + base + f for f in files if not _JUNK.search(base + f)]
            self._listing = sorted(found)
        return self._listing

    def _path(self, name: str) -> Path:
        if not name.startswith(self.prefix):
            raise self._missing(name)
        return self.root / name[len(self.prefix):]

    def has(self, name: str) -> bool:
        return name.startswith(self.prefix) and self._path(name).is_file()

    def where(self, name: str) -> str:
        return str(self._path(name)) if name.startswith(self.prefix) else f"{self.label}/{name}"

    def read(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            raise self._missing(name) from None
        except OSError as e:
            raise FalError(f"{self.where(name)}: unreadable ({e})") from e


class ZipSource(Source):
    """A zip archive, members read in place."""

    def __init__(self, path: Path) -> None:
        self.label = str(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise FalError(f"{path}: not a readable zip archive ({e}); download it again") from e
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            name = safe_member_name(info.filename, self.label)
            if stat.S_ISLNK(info.external_attr >> 16):
                self._zip.close()
                raise FalError(f"{path}: member {info.filename!r} is a symbolic link; refusing this archive")
            if not info.is_dir() and not _JUNK.search(name):
                self._members[name] = info

    def names(self) -> list[str]:
        return sorted(self._members)

    def has(self, name: str) -> bool:
        return name in self._members

    def read(self, name: str) -> bytes:
        if name not in self._members:
            raise self._missing(name)
        try:
            return self._zip.read(self._members[name])
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
            raise FalError(f"{self.where(name)}: corrupt member ({e}); download the archive again") from e

    def close(self) -> None:
        self._zip.close()


class TarSource(Source):
    """A tar archive (any compression tarfile reads); reads in archive order are fastest."""

    def __init__(self, path: Path) -> None:
        self.label = str(path)
        try:
            self._tar = tarfile.open(path, "r:*")
            members = self._tar.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise FalError(f"{path}: not a readable tar archive ({e}); download it again") from e
        self._members: dict[str, tarfile.TarInfo] = {}
        self._order: dict[str, int] = {}
        for i, info in enumerate(members):
            name = safe_member_name(info.name, self.label)
            if not (info.isfile() or info.isdir()):
                self._tar.close()
                kind = "link" if (info.issym() or info.islnk()) else "special file"
                raise FalError(f"{path}: member {info.name!r} is a {kind}; refusing this archive")
            if info.isfile() and not _JUNK.search(name):
                self._members[name] = info
                self._order[name] = i

    def names(self) -> list[str]:
        return sorted(self._members)

    def has(self, name: str) -> bool:
        return name in self._members

    def read(self, name: str) -> bytes:
        if name not in self._members:
            raise self._missing(name)
        try:
            handle = self._tar.extractfile(self._members[name])
            data = handle.read() if handle else b""
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise FalError(f"{self.where(name)}: corrupt member ({e}); download the archive again") from e
        if len(data) != self._members[name].size:
            raise FalError(f"{self.where(name)}: truncated member; download the archive again")
        return data

    def iter_read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        # compressed tars only seek forward cheaply, so follow the archive's own order
        wanted = sorted(set(names), key=lambda n: self._order.get(n, -1))
        for name in wanted:
            yield name, self.read(name)

    def close(self) -> None:
        self._tar.close()


def open_source(path: Path, prefix: str = "") -> Source:
    """Open a folder, zip or tar as a Source; `prefix` only applies to folders (see DirSource)."""
    path = Path(path)
    if path.is_dir():
        return DirSource(path, prefix)
    if not path.exists():
        raise FalError(f"{path}: no such file or folder")
    if zipfile.is_zipfile(path):
        return ZipSource(path)
    try:
        is_tar = tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error):
        is_tar = False
    if is_tar:
        return TarSource(path)
    raise FalError(f"{path}: neither a folder nor a readable zip/tar archive; download it again or unpack it")


def read_bytes(data: bytes | Path) -> bytes:
    """`data` itself, or the content of the file it names (FalError when unreadable)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    try:
        return Path(data).read_bytes()
    except OSError as e:
        raise FalError(f"{data}: cannot read ({e})") from e


__all__ = ["ARCHIVE_SUFFIXES", "DirSource", "Source", "TarSource", "ZipSource", "is_archive", "open_source",
           "read_bytes", "safe_member_name"]
