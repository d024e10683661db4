"""``traceparent``: the W3C spec's examples and the cases its test suite refuses, and our new ids."""

from __future__ import annotations

import pytest

from nodemesh.agent.proxy.tracecontext import TraceParent, format_traceparent, new_ids, parse_traceparent

# The spec's example (https://www.w3.org/TR/trace-context/#examples-of-http-traceparent-headers)
TRACE_HEX = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_HEX = "00f067aa0ba902b7"
TRACE, SPAN = int(TRACE_HEX, 16), int(SPAN_HEX, 16)
EXAMPLE = f"00-{TRACE_HEX}-{SPAN_HEX}-01"


def test_the_specs_examples_sampled_and_not() -> None:
    assert parse_traceparent(EXAMPLE) == TraceParent(TRACE, SPAN, sampled=True)
    assert parse_traceparent(f"00-{TRACE_HEX}-{SPAN_HEX}-00") == TraceParent(TRACE, SPAN, sampled=False)


def test_bytes_as_h2_gives_them_parse_as_text_does() -> None:
    assert parse_traceparent(EXAMPLE.encode()) == TraceParent(TRACE, SPAN, sampled=True)


def test_only_the_sampled_bit_of_the_flags_counts() -> None:
    assert parse_traceparent(f"00-{TRACE_HEX}-{SPAN_HEX}-09") == TraceParent(TRACE, SPAN, sampled=True)
    assert parse_traceparent(f"00-{TRACE_HEX}-{SPAN_HEX}-fe") == TraceParent(TRACE, SPAN, sampled=False)


def test_surrounding_spaces_and_tabs_are_not_part_of_the_value() -> None:
    assert parse_traceparent(f" \t{EXAMPLE}\t ") == TraceParent(TRACE, SPAN, sampled=True)


@pytest.mark.parametrize("value", [
    f"cc-{TRACE_HEX}-{SPAN_HEX}-01",  # exactly 55 characters
    f"cc-{TRACE_HEX}-{SPAN_HEX}-01-what-the-future-will-be-like",
    f"01-{TRACE_HEX}-{SPAN_HEX}-01-",
])
def test_a_later_version_is_read_as_far_as_version_00_goes(value: str) -> None:
    assert parse_traceparent(value) == TraceParent(TRACE, SPAN, sampled=True)


@pytest.mark.parametrize("value", [
    "",
    "00",
    EXAMPLE[:-1],  # too short
    EXAMPLE + "-",  # version 00 has nothing after its flags
    EXAMPLE + "-extra",
    EXAMPLE + "0",
    EXAMPLE + "\n",
    f"ff-{TRACE_HEX}-{SPAN_HEX}-01",  # version ff is forbidden
    f"cc-{TRACE_HEX}-{SPAN_HEX}-01.what-the-future-will-be-like",  # no dash after a later version's flags
    f"cc-{TRACE_HEX}-{SPAN_HEX}-0",
    f"0-{TRACE_HEX}-{SPAN_HEX}-01",
    f"000-{TRACE_HEX}-{SPAN_HEX}-01",
    f"0g-{TRACE_HEX}-{SPAN_HEX}-01",
    f"0A-{TRACE_HEX}-{SPAN_HEX}-01",  # upper-case version
    f"00-{TRACE_HEX.upper()}-{SPAN_HEX}-01",  # upper-case trace id
    f"00-{TRACE_HEX}-{SPAN_HEX.upper()}-01",
    f"00-{TRACE_HEX}-{SPAN_HEX}-0A",  # upper-case flags
    f"00-{'0' * 32}-{SPAN_HEX}-01",  # all-zero trace id
    f"00-{TRACE_HEX}-{'0' * 16}-01",  # all-zero parent id
    f"00-{TRACE_HEX[:-1]}-{SPAN_HEX}0-01",  # a field one short, the next one long
    f"00-{TRACE_HEX}-{SPAN_HEX[:-1]}-001",
    f"00_{TRACE_HEX}_{SPAN_HEX}_01",  # not dashes
    f"00-{TRACE_HEX[:-1]}.-{SPAN_HEX}-01",  # a character that is not hex
    f"00-{TRACE_HEX}-{SPAN_HEX[:-1]}.-01",
    f"00-{TRACE_HEX}-{SPAN_HEX}-.0",
    f"00-{TRACE_HEX}-{SPAN_HEX}-0.",
    f"00-{TRACE_HEX[:-1]}\u0663-{SPAN_HEX}-01",  # a digit, but not an ASCII one
])
def test_what_the_spec_calls_invalid_is_none(value: str) -> None:
    assert parse_traceparent(value) is None


@pytest.mark.parametrize("value", [b"00-\xff\xfe", EXAMPLE.replace("4", "\xe4").encode("latin-1"), b"\x00" * 55])
def test_bytes_that_are_not_ascii_are_none_not_an_error(value: bytes) -> None:
    assert parse_traceparent(value) is None


def test_formatted_ids_are_the_specs_text_and_read_back() -> None:
    assert format_traceparent(TRACE, SPAN, sampled=True) == EXAMPLE
    assert format_traceparent(1, 2, sampled=False) == f"00-{1:032x}-{2:016x}-00"
    assert parse_traceparent(format_traceparent(1, 2, sampled=False)) == TraceParent(1, 2, sampled=False)
    top = (1 << 128) - 1, (1 << 64) - 1
    assert parse_traceparent(format_traceparent(*top, sampled=True)) == TraceParent(*top, sampled=True)


def test_new_ids_are_non_zero_in_range_and_differ() -> None:
    drawn = [new_ids() for _ in range(1000)]
    assert all(0 < trace < 1 << 128 and 0 < span < 1 << 64 for trace, span in drawn)
    assert len({trace for trace, _ in drawn}) == len({span for _, span in drawn}) == len(drawn)
    # both halves of the random bytes are used: the top bits of the trace id are set in about half
    assert 300 < sum(trace >> 127 for trace, _ in drawn) < 700
    assert 300 < sum(span >> 63 for _, span in drawn) < 700


def test_new_ids_give_a_header_that_parses_to_them() -> None:
    trace, span = new_ids()
    assert parse_traceparent(format_traceparent(trace, span, sampled=True)) == TraceParent(trace, span, True)


def test_it_needs_only_the_standard_library() -> None:
    import ast
    import sys
    from pathlib import Path

    from nodemesh.agent.proxy import tracecontext

    tree = ast.parse(Path(tracecontext.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
