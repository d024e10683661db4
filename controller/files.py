"""Files the controller watches and writes, at the bottom of its layers so that every part can
use them.

Both the cluster file (``sources/file.py``) and the node tokens (``nodeauth/tokens.py``) are
reloaded when they change, and tell a change by the same stat fingerprint. What the controller
keeps (the CA root and its key, the addresses it assigned) is written one way, whole or not at
all.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

Fingerprint = tuple[int, int, int, int] | None  # None: the file cannot be stat'ed


def fingerprint(path: Path) -> Fingerprint:
    """What changes when a file is edited or replaced; None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``path`` whole or not at all, never readable beyond ``mode``.

    A temporary file beside it (private from its creation), written and fsync'ed, then renamed
    over it: a crash leaves the old file or the new one, never a torn one, and a key is not
    readable by others even for an instant.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
