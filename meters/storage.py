"""Object-store plumbing of the lake: paths of a lake in object storage (:class:`RemotePath`, the
subset of ``pathlib.Path`` the lake's callers use), opening a lake location by path or URL
(:func:`resolve`: pyarrow filesystems, else fsspec), and the read-only fsspec view DuckDB reads such a
lake through (:func:`duckdb_filesystem`). The lake's tables and file protocol are in
:mod:`meters.lake`; see docs/object-storage.md.
"""
from __future__ import annotations

import datetime as dt
import io
import os
import threading
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from .errors import MetersError


class RemotePath:
    """A file or "directory" of an object-store lake: the subset of :class:`pathlib.Path` that the
    lake and its callers use (``name``, ``/``, ``exists``, ``iterdir``, ``stat``, ``unlink``,
    ``read_text``, ``open``). ``str()`` is ``scheme://bucket/key``. It is not a local path:
    ``open(p)`` / ``os.fspath(p)`` raise a :class:`MetersError` naming the operation's limit."""

    __slots__ = ("fs", "path", "scheme", "_info")

    def __init__(self, fs: pafs.FileSystem, path: str, scheme: str, info: pafs.FileInfo | None = None):
        self.fs, self.path, self.scheme, self._info = fs, path.rstrip("/"), scheme, info

    # names
    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> "RemotePath":
        return RemotePath(self.fs, self.path.rsplit("/", 1)[0], self.scheme)

    def __truediv__(self, other) -> "RemotePath":
        return RemotePath(self.fs, f"{self.path}/{other}", self.scheme)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}"

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RemotePath) and (self.scheme, self.path) == (other.scheme, other.path)

    def __hash__(self) -> int:
        return hash((self.scheme, self.path))

    def __lt__(self, other: "RemotePath") -> bool:
        return self.path < other.path

    def __fspath__(self):
        raise MetersError(f"{self} is in object storage; this operation needs a lake on a local or "
                          "mounted path (see docs/object-storage.md)")

    # queries
    def info(self) -> pafs.FileInfo:
        if self._info is None:
            return self.fs.get_file_info(self.path)
        return self._info

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def iterdir(self):
        sel = pafs.FileSelector(self.path, allow_not_found=True)
        for info in self.fs.get_file_info(sel):
            yield RemotePath(self.fs, info.path, self.scheme, info)

    def stat(self) -> SimpleNamespace:
        info = self.info()
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(str(self))
        return SimpleNamespace(st_size=info.size or 0,
                               st_mtime=info.mtime.timestamp() if info.mtime else 0.0)

    # changes
    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def unlink(self, missing_ok: bool = False) -> None:
        if self.fs.get_file_info(self.path).type == pafs.FileType.NotFound:
            if missing_ok:
                return
            raise FileNotFoundError(str(self))
        self.fs.delete_file(self.path)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """One PUT of ``data`` (the object appears whole at close)."""
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def open(self, mode: str = "rb"):
        if mode == "rb":
            return self.fs.open_input_file(self.path)
        if mode == "wb":
            return self.fs.open_output_stream(self.path)
        raise ValueError(f"RemotePath.open: mode {mode!r} is not supported (use 'rb' or 'wb')")


def resolve(path) -> tuple[Path | RemotePath, pafs.FileSystem | None, str]:
    """``(root, filesystem, url)`` of a lake location: a plain path or ``file://`` URL gives a
    :class:`Path` (filesystem None); any other URL a :class:`RemotePath` on its pyarrow filesystem
    (``FileSystem.from_uri``; else fsspec through ``PyFileSystem(FSSpecHandler(...))``)."""
    if isinstance(path, RemotePath):
        raise MetersError(f"open the lake by its URL, not by the path {path}")
    s = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    if isinstance(path, os.PathLike) or "://" not in s:
        return Path(s), None, s
    scheme = s.split("://", 1)[0].lower()
    if scheme == "file":
        local = unquote(urlsplit(s).path)
        return Path(local), None, local
    try:
        fs, base = pafs.FileSystem.from_uri(s)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
        try:
            import fsspec
            from pyarrow.fs import FSSpecHandler, PyFileSystem
        except ImportError:
            raise MetersError(f"cannot open lake URL {s}: {e} (pyarrow does not know {scheme}:// and "
                              "fsspec is not installed)") from None
        try:
            ffs, base = fsspec.core.url_to_fs(s)
        except (ImportError, ValueError) as e2:
            raise MetersError(f"cannot open lake URL {s}: {e2}") from None
        fs = PyFileSystem(FSSpecHandler(ffs))
    except OSError as e:
        raise MetersError(f"cannot open lake URL {s}: {e}") from None
    return RemotePath(fs, base.rstrip("/"), scheme), fs, s


class _SharedReadFile(io.IOBase):
    """A read-only file whose position is kept per thread. DuckDB's fsspec bridge calls ``seek`` and
    then ``read`` on one handle from several scan threads; with one shared position two threads
    interleave and read each other's bytes (seen as "ZSTD Decompression failure"). Reads go through
    pyarrow's thread-safe positional ``read_at``."""

    def __init__(self, f: pa.NativeFile, path: str):
        self._f, self.path, self.mode = f, path, "rb"
        self.size = f.size()
        self._pos = threading.local()

    def tell(self) -> int:
        return getattr(self._pos, "v", 0)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.tell(), self.size)[whence]
        self._pos.v = max(0, base + offset)
        return self._pos.v

    def read(self, n: int = -1) -> bytes:
        pos = self.tell()
        n = self.size - pos if n is None or n < 0 else min(n, self.size - pos)
        data = self._f.read_at(n, pos) if n > 0 else b""
        self._pos.v = pos + len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self._f.close()
        super().close()


def duckdb_filesystem(fs: pafs.FileSystem):
    """An fsspec view of ``fs`` under the protocol ``meterslake://`` for DuckDB's register_filesystem
    (read side only: lake files are immutable once written)."""
    try:
        from fsspec.implementations.arrow import ArrowFSWrapper
    except ImportError:
        raise MetersError("SQL over an object-store lake needs fsspec (pip install fsspec)") from None

    class LakeFS(ArrowFSWrapper):
        protocol = "meterslake"
        root_marker = ""

        @classmethod
        def _strip_protocol(cls, path):
            path = str(path)
            if path.startswith("meterslake://"):
                path = path[len("meterslake://"):]
            return path.rstrip("/")

        def _open(self, path, mode="rb", **kwargs):
            if mode != "rb":
                raise PermissionError(f"meterslake:// is read-only ({path})")
            return _SharedReadFile(self.fs.open_input_file(self._strip_protocol(path)), path)

        def modified(self, path):
            # lake files are written once under unique names; some filesystems report no mtime
            mtime = self.fs.get_file_info(self._strip_protocol(path)).mtime
            return mtime or dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

    return LakeFS(fs, skip_instance_cache=True)
