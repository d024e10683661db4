"""Files that hold secrets (keys, tokens) and the folders they live in: only their owner may read them.

ssh refuses a private key that others can read, rather than warning: a secret readable by
group or others is already a leak, and a warning scrolls by. nodemesh does the same for every
secret it is given or keeps (the CA's key and folder, an agent's node token).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

GROUP_OTHER = 0o077


class NotPrivate(ValueError):
    """A secret's file or folder is open to group or others; the message says what to run."""


def check_private(path: Path, what: str) -> None:
    """Raise ``NotPrivate`` unless ``path`` (a file or folder) has no group or other permission bits."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & GROUP_OTHER:
        wanted = 0o700 if path.is_dir() else 0o600
        raise NotPrivate(f"{what} {path} has mode {mode:04o}: group or others may use it; "
                         f"allow only its owner: chmod {wanted:o} {path}")
