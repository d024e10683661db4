"""Kubernetes' ``$(VAR)`` expansion in a container's command, args and env values.

Manifests written for Kubernetes rely on it (``args: [--name, $(POD_NAME)]``), and there is no
kubelet here to do it, so the simulated cluster does it the same way: ``$(VAR)`` becomes the
variable's value when it is defined and stays as written when it is not; ``$$`` is an escaped
``$`` (so ``$$(VAR)`` gives the literal ``$(VAR)``); any other ``$`` is kept.
"""

from __future__ import annotations

import re
from typing import Mapping

_REFERENCE = re.compile(r"\$(\$|\(([^)]*)\))")


def expand(text: str, variables: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        return variables.get(match.group(2), match.group(0))

    return _REFERENCE.sub(replace, text)


def container_env(base: Mapping[str, str], declared: Mapping[str, str]) -> dict[str, str]:
    """The environment of a container: ``base`` then its declared variables, in order.

    As in Kubernetes, a declared value may refer to the variables defined before it.
    """
    env = dict(base)
    for name, value in declared.items():
        env[name] = expand(value, env)
    return env
