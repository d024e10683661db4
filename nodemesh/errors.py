"""The one kind of error a user can cause and fix, and how the CLI ends on it.

Every module raises its own subclass of ``UserError`` (``ConfigError``, ``SimError``,
``AdminError``, ...) with a message that says what went wrong and what to do; nobody catches
them to print and exit. ``nodemesh``'s command group (``tools/cli.py``) does that once for
every command: the message, no traceback, and ``exit_code``. Anything else that escapes is a
bug and keeps its traceback. Wrong flags are not raised this way: click's usage errors
(exit 2) already name the flag (``nodemesh.flags``).

This module imports nothing of nodemesh, so that every layer may raise these.
"""

from __future__ import annotations

EXIT_USER_ERROR = 1


class UserError(Exception):
    """Something the user can fix; the message says what. The CLI exits with ``exit_code``."""

    exit_code: int = EXIT_USER_ERROR


class CannotListen(UserError, OSError):
    """A port or address this host will not let us listen on (taken, not ours, privileged).

    Still an OSError with its errno, so that code which retries on OSError (a pod's listeners
    are opened again at the next enrollment attempt) keeps doing so.
    """

    def __str__(self) -> str:
        return str(self.strerror)  # the message alone, without OSError's "[Errno 98]" prefix
