"""Running a piece of a test as a user who is not root, from any checkout.

CI may clone the repository into a folder only root may enter (mode 0700): a child that drops
to ``nobody`` can then import nothing more from it. So the child imports every nodemesh module
first, while it is still root, and drops privileges only then; whatever the code under test
imports lazily (the CLI imports its subcommands when called) is already loaded.
"""

from __future__ import annotations

import importlib
import os
import pickle
import pkgutil
from typing import Any, Callable

NOBODY = 65534
PACKAGES = ("nodemesh", "nodemesh.agent", "nodemesh.controller", "nodemesh.tools")


def import_everything() -> None:
    """Every module of nodemesh (its subpackages live in folders of their own: walk each)."""
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            importlib.import_module(info.name)


def without_root(call: Callable[[], Any]) -> Any:
    """``call()`` in a forked child that is ``nobody`` (when the tests run as root): what it
    returned or raised."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            try:
                import_everything()
                if os.geteuid() == 0:
                    os.setgroups([])
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                result = call()
            except Exception as exc:
                result = exc
            os.write(write, pickle.dumps(result))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)
