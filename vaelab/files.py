"""Writing files so that nothing a user made is lost.

Every file vaelab or its tools write (checkpoints, CSVs, notebooks, GIFs, exported decoders)
goes through ``atomic_write``: the bytes go to a temporary file in the same folder, are flushed
to disk, and only a complete file is renamed over the destination. A full disk, Ctrl-C or a
crash leaves the old file as it was and no half-written one beside it::

    with atomic_write("latents.csv", "w") as fh:
        fh.write(text)
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def file_mode(path: Path) -> int:
    """The mode of the file ``path`` replaces, or what ``open()`` would give a new one."""
    if path.exists():
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None):
    """Open a temporary file beside ``path`` for writing (``mode`` ``"wb"`` or ``"w"``); when
    the block ends without an error, flush it to disk and rename it to ``path``. On any error
    (a full disk included) the temporary file is removed and ``path`` is unchanged; an OSError
    names ``path`` and says the previous file is kept."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w'; got {mode!r}")
    path = Path(path).expanduser()
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            with os.fdopen(fd, mode, encoding=encoding) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise OSError(err.errno, f"disk full or not writable: {path} ({err.strerror or err}); "
                          "any previous file there is unchanged") from err
        os.chmod(tmp, file_mode(path))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
