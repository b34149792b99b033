"""Volatile values: compared by class, not by value, when there is no baseline."""

from __future__ import annotations

import pytest

from shadowmesh.compare.volatile import is_volatile, value_class, volatile_match


@pytest.mark.parametrize(
    ("value", "cls"),
    [
        ("6f1c3a3e-8d1b-4c5e-9f00-1234567890ab", "uuid"),
        ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "ulid"),
        ("2024-05-01T12:30:45Z", "timestamp"),
        ("2024-05-01T12:30:45.123456+02:00", "timestamp"),
        ("2024-05-01 12:30", "timestamp"),
        ("Wed, 01 May 2024 12:30:45 GMT", "http-date"),
        ("Root=1-663234a5-1b2c3d4e5f60718293a4b5c6", "trace-id"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_nature", "jwt"),
        (1714566645, "epoch"),
        (1714566645123, "epoch"),
        ("1714566645", "epoch"),
        ("9f86d081884c7d659a2feaa0c55ad015", "hex"),
        ("AbCdEf0123456789xyzQRS", "token"),
        ("hello world", None),
        ("2024-05-01", None),  # a date alone is a value, not a clock
        (42, None),
        (True, None),
        ("abcdefghijklmnopqrstuvwxyz", None),  # a long word is not a token
        (None, None),
    ],
)
def test_value_classes(value: object, cls: str | None) -> None:
    assert value_class(value) == cls


def test_volatile_needs_the_same_class_on_both_sides() -> None:
    a, b = "6f1c3a3e-8d1b-4c5e-9f00-1234567890ab", "0b9c8d7e-1111-4222-8333-444455556666"
    assert is_volatile(("body", "uuid"), a, b)
    assert not is_volatile(("body", "uuid"), a, None)
    assert not is_volatile(("body", "uuid"), a, "2024-05-01T12:30:45Z")
    assert not is_volatile(("body", "name"), "ann", "bob")


def test_request_id_fields_are_volatile_by_name() -> None:
    assert is_volatile(("header", "x-request-id"), "abc", "def")
    assert is_volatile(("body", "headers", "X-Amzn-Trace-Id"), "Root=x", "Root=y")
    assert is_volatile(("body", "requestId"), 1, 2)
    assert not is_volatile(("body", "requestId"), "1", 2)


def test_volatile_values_match_by_class_shape_and_tolerance() -> None:
    def match(a: object, b: object, baseline: bool = True, tolerance: float = 60.0) -> bool:
        return volatile_match(("body", "at"), a, b, baseline=baseline, tolerance_s=tolerance)

    assert match("2024-05-01T12:30:45.123Z", "2024-05-01T12:30:45.987Z")
    assert match("2024-05-01T12:30:45.123Z", "2024-05-01T12:31:40.001Z")  # 55 s apart
    assert not match("2024-05-01T12:30:45.123Z", "2024-05-01T12:32:45.123Z")  # 120 s
    assert not match("2024-05-01T12:30:45.123Z", "2024-05-01T12:30:45Z")  # precision changed
    assert not match("2024-05-01T12:30:45Z", "2024-05-01T14:30:45+02:00")  # format changed
    assert match("Wed, 01 May 2024 12:30:45 GMT", "Wed, 01 May 2024 12:30:47 GMT", tolerance=5)
    assert match(1714566645, 1714566650) and not match(1714566645, 1714566645.5)
    a, b = "6f1c3a3e-8d1b-4c5e-9f00-1234567890ab", "0b9c8d7e-1111-4222-8333-444455556666"
    assert match(a, b) and not match(a, b.upper())
    # Without a baseline only the strict shapes: a token-looking plan name stays a value.
    plan_a, plan_b = "premium_annual_2024_tier3", "premium_yearly_2024_tier1"
    assert match(plan_a, plan_b) and not match(plan_a, plan_b, baseline=False)
    assert match(a, b, baseline=False)
    assert not match("/api/v1/products/abc12345", "/api/v2/products/abc12345", baseline=False)


def test_an_entity_tag_is_the_class_of_what_it_quotes() -> None:
    # A hash of a body holding a timestamp changes with the clock: with a baseline it is
    # volatile (the body itself is compared anyway); a word in quotes stays a word.
    a, b = '"5d41402abc4b2a76"', 'W/"9d41402abc4b2a7f"'
    assert value_class(a) == value_class(b) == "hex"
    assert volatile_match(("header", "etag"), a, '"9d41402abc4b2a7f"', baseline=True, tolerance_s=1)
    assert not volatile_match(("header", "etag"), a, b, baseline=True, tolerance_s=1)  # weak now
    assert value_class('"hello"') is None
