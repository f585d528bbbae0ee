"""Read raw inputs from a zip, a tar(.gz/.bz2/.xz) or an unpacked folder through one interface.

Members are read in place. Archives holding links, devices, absolute paths or `..` members are refused
outright (tar slip, CVE-2007-4559), even though we never extract them with tarfile/zipfile.

Every read is bounded (docs/reliability.md): a member or file larger than MAX_MEMBER_BYTES is refused by its
declared size *and* by counting the bytes as they stream in (a zip's declared size can lie), and one source
yields at most MAX_TOTAL_BYTES in all. Folders are walked without following links: FIFOs, devices and sockets
are skipped without being opened (opening a FIFO blocks), and symbolic links are followed only under
`reading(follow_links=True)` (`fal prepare --follow-links`), to regular files and folders, never in a loop.
Longer than ~400 lines on purpose: the three sources share the bounds above, which are easier to audit in one file.
"""
from __future__ import annotations

import contextlib
import contextvars
import io
import os
import re
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Callable, Iterable, Iterator

from falcli.errors import FalError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# macOS zip tools add these resource-fork copies; they look like images but are not.
_JUNK = re.compile(r"(^|/)(__MACOSX/|\._)")

# Caps of every read (the peak memory of `fal prepare` is about 2 x MAX_MEMBER_BYTES plus the decoded image).
# The largest members of the supported downloads are a few MB (Cityscapes PNGs, binvox files) to ~100 MB (a few
# ShapeNetCore meshes); the largest download (Cityscapes' leftImg8bit) holds 11 GB.
MAX_MEMBER_BYTES = 512 * 2**20
MAX_TOTAL_BYTES = 64 * 2**30
MAX_LINK_DEPTH = 40                      # folders nested through followed links (a bound, besides loop checks)
_CHUNK = 2**20


@dataclass(frozen=True)
class ReadSettings:
    """How folders are walked: follow symbolic links or not, and where the one line about skips goes."""

    follow_links: bool = False
    warn: Callable[[str], None] = print


_SETTINGS: contextvars.ContextVar[ReadSettings] = contextvars.ContextVar("fal_read_settings",
                                                                         default=ReadSettings())


@contextlib.contextmanager
def reading(follow_links: bool = False, warn: Callable[[str], None] = print) -> Iterator[None]:
    """Settings for every DirSource opened inside (set once by `fal prepare`, not threaded through preparers)."""
    token = _SETTINGS.set(ReadSettings(follow_links, warn))
    try:
        yield
    finally:
        _SETTINGS.reset(token)


def _too_large(label: str, size: int) -> FalError:
    return FalError(f"{label}: {size / 2**20:.0f} MiB or more, over the {MAX_MEMBER_BYTES // 2**20} MiB cap of "
                    f"one file (a decompression bomb, or not a file of this dataset); remove it or get a clean copy")


def read_capped(handle: IO[bytes], label: str, declared: int | None = None) -> bytes:
    """Read `handle` to its end in chunks, refusing more than MAX_MEMBER_BYTES (declared or actually read)."""
    if declared is not None and declared > MAX_MEMBER_BYTES:
        raise _too_large(label, declared)
    buffer = io.BytesIO()
    total = 0
    while True:
        chunk = handle.read(min(_CHUNK, MAX_MEMBER_BYTES + 1 - total))
        if not chunk:
            return buffer.getvalue()
        total += len(chunk)
        if total > MAX_MEMBER_BYTES:
            raise _too_large(label, total)
        buffer.write(chunk)


def _bad_name(name: str) -> bool:
    # Item names are stored one per line (names.txt): a name with a line break cannot be kept.
    return "\n" in name or "\r" in name


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

    def _count(self, data: bytes) -> bytes:
        """Add `data` to this source's total read, refusing more than MAX_TOTAL_BYTES in all."""
        self._read_total = getattr(self, "_read_total", 0) + len(data)
        if self._read_total > MAX_TOTAL_BYTES:
            raise FalError(f"{self.label}: more than {MAX_TOTAL_BYTES // 2**30} GiB read, over the cap of one "
                           f"dataset (docs/reliability.md); is this the right download?")
        return data

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
    """An unpacked folder; `prefix` is prepended to every name (to look like the archive's top folder).

    Only regular files are listed; what else the walk meets (links unless followed, FIFOs, devices, sockets,
    names with line breaks, loops) is skipped and reported in one line through the `reading` settings.
    """

    def __init__(self, root: Path, prefix: str = "", follow_links: bool | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FalError(f"{self.root}: no such folder")
        settings = _SETTINGS.get()
        self.follow_links = settings.follow_links if follow_links is None else follow_links
        self._warn = settings.warn
        self.prefix = prefix.rstrip("/") + "/" if prefix else ""
        self.label = str(self.root)
        self._listing: list[str] | None = None

    def names(self) -> list[str]:
        if self._listing is None:
            found: list[str] = []
            skipped: list[str] = []
            self._walk(found, skipped)
            self._listing = sorted(self.prefix + name for name in found)
            _report_skipped(self._warn, self.label, skipped)
        return self._listing

    def _walk(self, found: list[str], skipped: list[str]) -> None:
        """Depth-first over the folder, never following a link unless asked, never entering a folder twice."""
        root_stat = os.stat(self.root)
        visited = {(root_stat.st_dev, root_stat.st_ino)}
        stack: list[tuple[Path, str, int]] = [(self.root, "", 0)]
        while stack:
            folder, base, links = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as e:
                raise FalError(f"{folder}: unreadable folder ({e.strerror})") from None
            for entry in entries:
                rel = base + entry.name
                if _JUNK.search(rel):
                    continue
                if _bad_name(rel):
                    skipped.append(f"{rel!r} (a line break in the name)")
                    continue
                try:
                    if entry.is_symlink():
                        if not self.follow_links:
                            skipped.append(f"{rel} (a symbolic link)")
                            continue
                        info = os.stat(entry.path)  # the target: lstat-ing the link said nothing about it
                        via_link = 1
                    else:
                        info = entry.stat(follow_symlinks=False)
                        via_link = 0
                except OSError:
                    skipped.append(f"{rel} (a broken link)")
                    continue
                if stat.S_ISREG(info.st_mode):
                    found.append(rel)
                elif stat.S_ISDIR(info.st_mode):
                    key = (info.st_dev, info.st_ino)
                    if key in visited:
                        skipped.append(f"{rel} (a link back to a folder already walked)")
                    elif links + via_link > MAX_LINK_DEPTH:
                        skipped.append(f"{rel} (more than {MAX_LINK_DEPTH} links deep)")
                    else:
                        visited.add(key)
                        stack.append((Path(entry.path), rel + "/", links + via_link))
                else:
                    skipped.append(f"{rel} (a {_kind(info.st_mode)})")

    def _path(self, name: str) -> Path:
        if not name.startswith(self.prefix):
            raise self._missing(name)
        return self.root / name[len(self.prefix):]

    def has(self, name: str) -> bool:
        if not name.startswith(self.prefix):
            return False
        try:
            info = os.stat(self._path(name)) if self.follow_links else os.lstat(self._path(name))
        except (OSError, ValueError):
            return False
        return stat.S_ISREG(info.st_mode)

    def where(self, name: str) -> str:
        return str(self._path(name)) if name.startswith(self.prefix) else f"{self.label}/{name}"

    def read(self, name: str) -> bytes:
        return self._count(read_file(self._path(name), self.follow_links, self.where(name)))


def _report_skipped(warn: Callable[[str], None], label: str, skipped: list[str]) -> None:
    """One line for everything a listing left out (the first three named)."""
    if not skipped:
        return
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    links = any("(a symbolic link)" in entry for entry in skipped)
    hint = " (--follow-links follows links to regular files and folders)" if links else ""
    warn(f"{label}: skipped {len(skipped)} entries that are not usable regular files: "
         f"{'; '.join(skipped[:3])}{more}{hint}")


def _kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "FIFO", stat.S_ISCHR: "character device", stat.S_ISBLK: "block device",
             stat.S_ISSOCK: "socket", stat.S_ISDIR: "folder", stat.S_ISLNK: "symbolic link"}
    return next((kind for test, kind in kinds.items() if test(mode)), "special file")


def read_file(path: Path, follow_links: bool = True, label: str | None = None) -> bytes:
    """The bytes of one regular file, bounded by MAX_MEMBER_BYTES; FIFOs and devices refused unopened."""
    label = label or str(path)
    try:
        info = os.stat(path) if follow_links else os.lstat(path)
    except FileNotFoundError:
        raise FalError(f"{label}: no such file; is the download complete?") from None
    except OSError as e:
        raise FalError(f"{label}: unreadable ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise FalError(f"{label}: a {_kind(info.st_mode)}, not a regular file; pass the file itself")
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else getattr(os, "O_NOFOLLOW", 0))
    try:
        # O_NONBLOCK: were the file swapped for a FIFO since the stat, opening it still returns at once
        descriptor = os.open(path, flags)
    except OSError as e:
        raise FalError(f"{label}: unreadable ({e.strerror})") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise FalError(f"{label}: not a regular file; pass the file itself")
        try:
            return read_capped(handle, label, os.fstat(descriptor).st_size)
        except OSError as e:
            raise FalError(f"{label}: unreadable ({e.strerror})") from None


class ZipSource(Source):
    """A zip archive, members read in place."""

    def __init__(self, path: Path) -> None:
        self.label = str(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise FalError(f"{path}: not a readable zip archive ({e}); download it again") from e
        self._members: dict[str, zipfile.ZipInfo] = {}
        skipped: list[str] = []
        for info in self._zip.infolist():
            name = safe_member_name(info.filename, self.label)
            if stat.S_ISLNK(info.external_attr >> 16):
                self._zip.close()
                raise FalError(f"{path}: member {info.filename!r} is a symbolic link; refusing this archive")
            if _bad_name(name):
                skipped.append(f"{name!r} (a line break in the name)")
            elif not info.is_dir() and not _JUNK.search(name):
                self._members[name] = info
        _report_skipped(_SETTINGS.get().warn, self.label, skipped)
        declared = sum(info.file_size for info in self._members.values())
        if declared > MAX_TOTAL_BYTES:
            self._zip.close()
            raise FalError(f"{path}: declares {declared / 2**30:.0f} GiB of files, over the "
                           f"{MAX_TOTAL_BYTES // 2**30} GiB cap of one dataset (a decompression bomb?); get a clean copy")

    def names(self) -> list[str]:
        return sorted(self._members)

    def has(self, name: str) -> bool:
        return name in self._members

    def read(self, name: str) -> bytes:
        if name not in self._members:
            raise self._missing(name)
        info = self._members[name]
        try:
            if info.file_size > MAX_MEMBER_BYTES:  # before decompressing a single byte
                raise _too_large(self.where(name), info.file_size)
            with self._zip.open(info) as handle:
                return self._count(read_capped(handle, self.where(name), info.file_size))
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as e:
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
        skipped: list[str] = []
        for i, info in enumerate(members):
            name = safe_member_name(info.name, self.label)
            if not (info.isfile() or info.isdir()):
                self._tar.close()
                kind = "link" if (info.issym() or info.islnk()) else "special file"
                raise FalError(f"{path}: member {info.name!r} is a {kind}; refusing this archive")
            if info.isfile() and _bad_name(name):
                skipped.append(f"{name!r} (a line break in the name)")
            elif info.isfile() and not _JUNK.search(name):
                self._members[name] = info
                self._order[name] = i
        _report_skipped(_SETTINGS.get().warn, self.label, skipped)

    def names(self) -> list[str]:
        return sorted(self._members)

    def has(self, name: str) -> bool:
        return name in self._members

    def read(self, name: str) -> bytes:
        if name not in self._members:
            raise self._missing(name)
        info = self._members[name]
        if info.size > MAX_MEMBER_BYTES:  # before decompressing a single byte
            raise _too_large(self.where(name), info.size)
        try:
            handle = self._tar.extractfile(info)
            data = read_capped(handle, self.where(name), info.size) if handle else b""
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise FalError(f"{self.where(name)}: corrupt member ({e}); download the archive again") from e
        if len(data) != self._members[name].size:
            raise FalError(f"{self.where(name)}: truncated member; download the archive again")
        return self._count(data)

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
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):  # zipfile/tarfile would open (and block on) a FIFO
        raise FalError(f"{path}: a {_kind(info.st_mode)}, neither a folder nor an archive; pass the download itself")
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
    return read_file(Path(data))


__all__ = ["ARCHIVE_SUFFIXES", "MAX_MEMBER_BYTES", "MAX_TOTAL_BYTES", "DirSource", "Source", "TarSource",
           "ZipSource", "is_archive", "open_source", "read_bytes", "read_capped", "read_file", "reading",
           "safe_member_name"]
