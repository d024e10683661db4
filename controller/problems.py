"""The one shape of "the controller cannot use this input": every problem listed, not the first.

Each layer raises its own kind (``kube``: objects that do not parse, ``model``: objects that make
no mesh model) so that neither borrows the other's; a source and ``nodemesh controller`` catch
the base and print every message, so that one run names all there is to fix.
"""

from __future__ import annotations

from nodemesh.errors import UserError


class Problems(UserError):
    """``errors`` lists every problem, one message each (the CLI prints them all)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)
