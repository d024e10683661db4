"""W3C Trace Context (``traceparent``), sans-IO: new ids, and the header written and read.

The source agent starts a connection's trace and sends its span id to the destination agent in
the CONNECT request's ``traceparent``; the destination's span is that span's child. Only the
header's text is here: who sends it and who exports the spans is the proxy's and telemetry's
business, so this module imports nothing of the project (and nothing beyond the standard
library), and each function is one cheap call on the connection path.

Parsing follows https://www.w3.org/TR/trace-context/#traceparent-header to the letter, with
one thing HTTP does first: a field value has no surrounding spaces or tabs (RFC 9110, 5.5), so
they are stripped, as the W3C test suite expects. A value that is not valid gives ``None``,
never an exception: a bad header from a peer starts a new trace, it never fails a connection.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

TRACEPARENT_HEADER = b"traceparent"
_SPAN_BITS = 64
_SPAN_MASK = (1 << _SPAN_BITS) - 1

# version, trace-id, parent-id, trace-flags, then what a later version may add (kept opaque).
# The spec's hex is lowercase only (HEXDIGLC); \Z, not $, so that a trailing newline is refused.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z", re.DOTALL)
_INVALID_VERSION = "ff"
_SAMPLED = 0x01
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class TraceParent:
    """What a valid ``traceparent`` says: the trace, the sender's span (our parent), sampled or not."""

    trace_id: int  # 128 bits, never 0
    span_id: int  # 64 bits, never 0
    sampled: bool


def new_ids() -> tuple[int, int]:
    """A new (trace id, span id): random, non-zero, 128 and 64 bits.

    One ``os.urandom`` read for both: unpredictable and safe across fork (a PRNG's state would
    repeat in a forked child), and the spec asks trace ids to be random. An all-zero id is
    invalid; the chance of drawing one is 2**-64, so the loop is for correctness only.
    """
    while True:
        bits = int.from_bytes(os.urandom(24), "big")
        trace_id, span_id = bits >> _SPAN_BITS, bits & _SPAN_MASK
        if trace_id and span_id:
            return trace_id, span_id


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    """The version 00 header value: ``00-<32 hex>-<16 hex>-01`` (sampled) or ``...-00``.

    The ids are not checked: they come from ``new_ids`` or ``parse_traceparent``, which only give
    valid ones.
    """
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def parse_traceparent(value: str | bytes) -> TraceParent | None:
    """The ``traceparent`` in ``value`` (as h2 gives it, bytes, or text), or None if not valid.

    Version 00 must be exactly its 55 characters. A later version is read as far as version 00
    defines (at least 55 characters, and a dash after them if there are more) so that a newer
    peer still joins the trace. Version ff, upper-case hex, and an all-zero trace or parent id
    are invalid.
    """
    # latin-1 maps every byte to one character and never fails; a non-ASCII one fails the match.
    text = (value.decode("latin-1") if isinstance(value, bytes) else value).strip(_OWS)
    match = _TRACEPARENT.match(text)
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, extension = match.groups()
    if version == _INVALID_VERSION or (version == "00" and extension is not None):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    return TraceParent(trace_id, span_id, bool(int(flags_hex, 16) & _SAMPLED))
