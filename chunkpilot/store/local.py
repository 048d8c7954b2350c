"""A store in a local directory: the default, and what most users meet first.

Atomicity comes from the file system: ``put`` writes a temporary file in the
target's folder and renames it over the target; ``put_if_absent`` hard-links the
temporary file to the target, which fails if the target exists; ``put_if_match``
takes an ``flock`` on a side lock file so the compare and the replace are one step.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from chunkpilot.errors import NotFoundError, StoreError
from chunkpilot.store.base import ObjectInfo, Store, join_key, pwrite_all

_TMP_PREFIX = ".tmp-"


def _etag(st: os.stat_result) -> str:
    # A rename creates a new inode, so (inode, mtime, size) changes on every put.
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


class LocalStore(Store):
    """A store rooted at a local directory path."""

    parallel_reads = 1  # a read is a system call: threads would only add their own overhead

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().absolute()
        self.uri = str(self.root)

    def __repr__(self) -> str:
        return f"LocalStore({self.uri!r})"

    # -- paths ---------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return Path(self._filename(key))

    def _filename(self, key: str) -> str:
        parts = key.split("/")  # checked for every object read: membership tests, not a loop in Python
        if key.startswith("/") or ".." in parts or "." in parts:
            raise StoreError(f"invalid store key {key!r}")
        return os.path.join(self.uri, key) if key else self.uri

    def child(self, prefix: str) -> "LocalStore":
        return LocalStore(self._path(prefix))

    # -- reads ---------------------------------------------------------------
    def get(self, key: str) -> bytes:
        try:
            with open(self._filename(key), "rb") as f:  # not pathlib: collect reads many small objects
                return f.read()
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.uri}/{key} does not exist") from exc
        except IsADirectoryError as exc:
            raise NotFoundError(f"{self.uri}/{key} is a folder, not an object") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {self.uri}/{key}: {exc.strerror}") from exc

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read(end - start)
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.uri}/{key} does not exist") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {self.uri}/{key}: {exc.strerror}") from exc

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.uri}/{key} does not exist") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {self.uri}/{key}: {exc.strerror}") from exc

    def write_into(self, key: str, fd: int, offset: int) -> int:
        try:
            src = os.open(self._filename(key), os.O_RDONLY)
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.uri}/{key} does not exist") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {self.uri}/{key}: {exc.strerror}") from exc
        try:
            return copy_into(src, fd, offset)
        except OSError as exc:
            raise StoreError(f"cannot copy {self.uri}/{key} into the output: {exc.strerror or exc}") from exc
        finally:
            os.close(src)

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.uri}/{key} does not exist") from exc
        except OSError as exc:
            raise StoreError(f"cannot stat {self.uri}/{key}: {exc.strerror}") from exc
        if not path.is_file():
            raise NotFoundError(f"{self.uri}/{key} is a folder, not an object")
        return ObjectInfo(key, st.st_size, _etag(st), st.st_mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Lazily, in key order: a walk of sorted folders, where a folder sorts as its name plus
        ``/`` (the order S3 gives the keys under it). Holds one folder's entries at a time."""
        for key, entry in self._walk(prefix):
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # deleted while we walked
            yield ObjectInfo(key, st.st_size, _etag(st), st.st_mtime)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """``list``'s keys without a ``stat`` of each file."""
        return (key for key, _ in self._walk(prefix))

    def _walk(self, prefix: str) -> Iterator[tuple[str, os.DirEntry]]:
        base = self._filename(prefix.rstrip("/")) if prefix.strip("/") else self.uri
        if prefix and not prefix.endswith("/"):  # a prefix may end mid-name ("out/00" matches "out/0001/..."), like S3's
            parent, stem = os.path.split(base)
            return self._files(e for e in _sorted_entries(parent) if e.name.startswith(stem))
        return self._files(_sorted_entries(base))

    def _files(self, entries) -> Iterator[tuple[str, os.DirEntry]]:
        """(key, entry) of the files at and under ``entries``, built with plain strings (pathlib is slow
        per object: BENCHMARKS.md §4)."""
        skip = len(self.uri.rstrip(os.sep)) + 1
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from self._files(_sorted_entries(entry.path))
                elif not entry.name.endswith(".lock") and entry.is_file():
                    yield entry.path[skip:].replace(os.sep, "/"), entry
            except FileNotFoundError:
                continue  # deleted while we walked

    # -- writes --------------------------------------------------------------
    def _write_tmp(self, path: Path, data: bytes) -> str:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return tmp
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}") from exc

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._write_tmp(path, data)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            _silent_unlink(tmp)
            raise StoreError(f"cannot write {self.uri}/{key}: {exc.strerror}") from exc

    def put_file(self, key: str, path: str) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                    copy_into(src.fileno(), out.fileno(), 0)
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            except BaseException:
                _silent_unlink(tmp)
                raise
        except OSError as exc:
            raise StoreError(f"cannot write {self.uri}/{key}: {exc.strerror or exc}") from exc

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._write_tmp(path, data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot write {self.uri}/{key}: {exc.strerror}") from exc
        finally:
            _silent_unlink(tmp)

    def put_if_match(self, key: str, data: bytes, etag: str) -> bool:
        path = self._path(key)
        lock_path = path.with_name(path.name + ".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    current = _etag(path.stat())
                except FileNotFoundError:
                    return False
                if current != etag:
                    return False
                self.put(key, data)
                return True
        except OSError as exc:
            raise StoreError(f"cannot write {self.uri}/{key}: {exc.strerror}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot delete {self.uri}/{key}: {exc.strerror}") from exc

    def check_writable(self) -> None:
        """Check without creating anything: the root, or its nearest existing ancestor, is a writable folder."""
        path = self.root
        while not path.exists():
            if path.parent == path:
                break
            path = path.parent
        if not path.is_dir():
            raise StoreError(f"store {self.uri} is not writable: {path} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise StoreError(f"store {self.uri} is not writable: no write permission on {path}")


def copy_into(src: int, fd: int, offset: int) -> int:
    """Copy the whole file open at ``src`` into ``fd`` at ``offset``; returns the bytes copied.

    ``copy_file_range`` keeps the copy inside the kernel (``cat`` uses it too); where the
    kernel refuses (another file system on an old kernel, a special file) the bytes go
    through a buffer with ``pread``/``pwrite``.
    """
    size, copied = os.fstat(src).st_size, 0
    kernel_copy = getattr(os, "copy_file_range", None)  # Linux only
    try:
        while kernel_copy and copied < size and (n := kernel_copy(src, fd, size - copied, copied, offset + copied)):
            copied += n
        if kernel_copy:
            return copied
    except OSError as exc:
        if copied or exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EBADF):
            raise
    while data := os.pread(src, 1 << 20, copied):
        copied += pwrite_all(fd, data, offset + copied)
    return copied


def _silent_unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:  # pragma: no cover - best effort cleanup
        if exc.errno != errno.ENOENT:
            pass


def _sorted_entries(folder: str) -> list[os.DirEntry]:
    """A folder's entries but temporary files, in the order of the keys they hold."""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not e.name.startswith(_TMP_PREFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(entries, key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)


__all__ = ["LocalStore", "copy_into", "join_key"]
