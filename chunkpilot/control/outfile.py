"""Writing a file a user asked for (``collect -o``, ``report -o``): one way, whatever the command.

The file's folder is created if missing; the file appears whole or not at all (written beside
it under a temporary name, then renamed); its mode is 0644 less the umask, as any file a
command-line tool creates; and a failure of the local file system becomes one OutputError.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

from chunkpilot.errors import OutputError

FILE_MODE = 0o644  # os.open applies the umask
T = TypeVar("T")


def write_atomically(path: str, write: Callable[[int], T]) -> T:
    """``write(fd)`` into a new file that then replaces ``path``; returns what ``write`` returned.

    The temporary file is removed on any failure; OSError (a full disk, a read-only folder, a
    folder that cannot be created) is raised as OutputError naming ``path``."""
    tmp = f"{path}.partial"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            result = write(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return result
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
