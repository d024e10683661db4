"""Files the controller watches, at the bottom of its layers so that every part can use them.

Both the cluster file (``sources/file.py``) and the node tokens (``nodeauth/tokens.py``) are
reloaded when they change, and tell a change by the same stat fingerprint.
"""

from __future__ import annotations

import os
from pathlib import Path

Fingerprint = tuple[int, int, int, int] | None  # None: the file cannot be stat'ed


def fingerprint(path: Path) -> Fingerprint:
    """What changes when a file is edited or replaced; None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
