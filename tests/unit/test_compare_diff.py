"""Diffing normalised trees: the kinds of difference, arrays by position, order-only arrays,
array alignments (moved, changed, added, removed), field keys, and path patterns."""

from __future__ import annotations

from typing import Any

from shadowmesh.compare.diff import (
    ABSENT,
    MAX_ARRAY_ITEMS,
    MAX_DEPTH,
    ArrayDiff,
    Difference,
    array_diff,
    array_of,
    diff,
    diff_values,
    flatten,
)
from shadowmesh.compare.paths import field_of, matches
from shadowmesh.model.comparison import parse_path


def response(
    status: int = 200, headers: dict[str, str] | None = None, body: Any = None
) -> dict[str, Any]:
    return {"status": status, "header": headers or {}, "body": body}


def kinds(found: list[Difference]) -> list[tuple[str, str]]:
    from shadowmesh.model.comparison import format_path

    return [(format_path(d.path), d.kind) for d in found]


def test_identical_responses_have_no_difference() -> None:
    body = {"a": [1, {"b": [True, None]}], "c": "x"}
    assert diff(response(body=body), response(body=body)) == []


def test_status_header_and_body_kinds() -> None:
    left = response(
        200, {"content-type": "application/json", "x-old": "1"}, {"a": 1, "b": "x", "c": 1}
    )
    right = response(500, {"content-type": "text/html", "x-new": "1"}, {"a": "1", "b": "y", "d": 2})
    assert kinds(diff(left, right)) == [
        ("status", "status"),
        ("header.content-type", "value"),
        ("header.x-old", "missing"),
        ("header.x-new", "extra"),
        ("body.a", "type"),
        ("body.b", "value"),
        ("body.c", "missing"),
        ("body.d", "extra"),
    ]


def test_missing_and_extra_carry_the_present_value() -> None:
    [missing, extra] = diff_values({"gone": {"x": 1}}, {"new": [2]}, ("body",))
    assert (missing.left, missing.right) == ({"x": 1}, ABSENT)
    assert (extra.left, extra.right) == (ABSENT, [2])


def test_booleans_are_not_numbers_and_ints_equal_floats() -> None:
    assert kinds(diff_values([True], [1], ("body",))) == [("body[0]", "type")]
    assert diff_values({"n": 1}, {"n": 1.0}) == []
    assert kinds(diff_values(None, {}, ("body",))) == [("body", "type")]


def test_arrays_compare_by_position() -> None:
    left = [{"id": 1}, {"id": 2}, {"id": 3}]
    right = [{"id": 1}, {"id": 9}, {"id": 3}, {"id": 4}]
    assert kinds(diff_values(left, right, ("body", "items"))) == [
        ("body.items[1].id", "value"),
        ("body.items[3]", "extra"),
    ]
    assert kinds(diff_values([1, 2, 3], [1], ("body",))) == [
        ("body[1]", "missing"),
        ("body[2]", "missing"),
    ]


def test_reordered_array_is_order_only() -> None:
    left = {"tags": ["a", "b", {"k": 1}]}
    right = {"tags": [{"k": 1}, "a", "b"]}
    [only] = diff_values(left, right, ("body",))
    assert (only.path, only.kind) == (("body", "tags"), "order")
    assert (only.left, only.right) == (left["tags"], right["tags"])


def test_equal_arrays_are_no_difference_even_nested() -> None:
    # opendiffy's bug: identical arrays reported as an ordering difference.
    value = {"a": [[1, 2], [3, [4, 5]]], "b": []}
    assert diff_values(value, {"a": [[1, 2], [3, [4, 5]]], "b": []}) == []


def test_same_elements_different_counts_is_not_order_only() -> None:
    assert kinds(diff_values([1, 1, 2], [1, 2, 2], ("body",))) == [("body[1]", "value")]


def test_object_key_order_is_no_difference() -> None:
    assert diff_values({"a": 1, "b": 2}, {"b": 2, "a": 1}) == []
    assert kinds(diff_values([{"a": 1, "b": 2}, 5], [5, {"b": 2, "a": 1}], ("x",))) == [
        ("x", "order")
    ]


def test_deep_trees_compare_whole_past_the_depth_cap() -> None:
    def nest(leaf: Any, depth: int) -> Any:
        for _ in range(depth):
            leaf = {"n": leaf}
        return leaf

    found = diff_values(nest(1, MAX_DEPTH + 20), nest(2, MAX_DEPTH + 20))
    assert len(found) == 1 and found[0].kind == "value"
    assert len(found[0].path) == MAX_DEPTH + 1  # the subtree below the cap is one value
    assert diff_values(nest(1, 500), nest(1, 500)) == []


def test_flatten() -> None:
    assert flatten({"a": [1, {"b": None}], "c": {}, "d": []}, ("body",)) == {
        ("body", "a", 0): 1,
        ("body", "a", 1, "b"): None,
        ("body", "c"): {},
        ("body", "d"): [],
    }


def test_field_keys_fold_indices() -> None:
    assert field_of(("body", "items", 3, "id")) == "body.items[*].id"
    assert field_of(("body", 0)) == "body[*]"
    assert field_of(("header", "content-type")) == "header.content-type"
    assert field_of(("body", "a.b")) == 'body["a.b"]'


def test_patterns_match_paths_and_their_descendants() -> None:
    path = ("body", "items", 3, "id")
    for yes in (
        "body",
        "body.items",
        "body.items[*]",
        "body.items[3].id",
        "body.*[*].id",
        "body.**.id",
        "body.**",
    ):
        assert matches(parse_path(yes), path), yes
    for no in (
        "body.items[2]",
        "body.item",
        "header",
        "body.items[*].idx",
        "body.*.id",
        "body.**.name",
    ):
        assert not matches(parse_path(no), path), no
    assert matches(parse_path("body.**.password"), ("body", "password"))
    assert not matches(parse_path("body.Password"), ("body", "password"))
    assert matches(parse_path("body.Password"), ("body", "password"), fold_case=True)


def aligned(left: list[Any], right: list[Any]) -> ArrayDiff:
    found = array_diff(left, right)
    assert found is not None
    return found


def test_an_array_diff_of_equal_arrays_keeps_everything() -> None:
    assert aligned([1, {"a": 2}], [1, {"a": 2}]) == ArrayDiff((2, 2), 2, (), (), (), ())


def test_an_array_diff_names_what_moved_from_where_to_where() -> None:
    # Two swapped: one of them stays in order with the rest, the other is the one that moved.
    swap = aligned(["a", "b", "c", "d"], ["b", "a", "c", "d"])
    assert (swap.kept, swap.changed, swap.removed, swap.added) == (3, (), (), ())
    assert swap.moved in (((0, 1),), ((1, 0),))
    # The last becomes the first: it moved; the others only shifted, they did not.
    rotated = aligned([{"id": 1}, {"id": 2}, {"id": 3}], [{"id": 3}, {"id": 1}, {"id": 2}])
    assert (rotated.kept, rotated.moved) == (2, ((2, 0),))
    reversed_ = aligned([1, 2, 3, 4], [4, 3, 2, 1])
    assert reversed_.kept == 1 and len(reversed_.moved) == 3
    assert reversed_.changed == reversed_.removed == reversed_.added == ()
    assert {i for i, _ in reversed_.moved} | {j for _, j in reversed_.moved} <= {0, 1, 2, 3}
    for i, j in reversed_.moved:
        assert [1, 2, 3, 4][i] == [4, 3, 2, 1][j]


def test_an_array_diff_tells_changed_in_place_from_added_and_removed() -> None:
    changed = aligned([{"id": 1}, {"id": 2}, {"id": 3}], [{"id": 1}, {"id": 20}, {"id": 3}])
    assert changed == ArrayDiff((3, 3), 2, (), ((1, 1),), (), ())
    # One inserted at the front shifts every index, yet nothing moved nor changed.
    inserted = aligned(["b", "c", "d"], ["a", "b", "c", "d"])
    assert inserted == ArrayDiff((3, 4), 3, (), (), (), (0,))
    removed = aligned(["a", "b", "c"], ["a", "c"])
    assert removed == ArrayDiff((3, 2), 2, (), (), (1,), ())
    # All at once: 0 and 1 swap, 2 changes, 4 goes, a new one comes at the end.
    mixed = aligned(["a", "b", "c", "d", "e"], ["b", "a", "C", "d", "x", "y"])
    assert mixed.lengths == (5, 6)
    assert len(mixed.moved) == 1 and mixed.moved[0] in ((0, 1), (1, 0))
    assert mixed.changed == ((2, 2), (4, 4)) and mixed.added == (5,) and mixed.removed == ()


def test_an_array_diff_pairs_duplicates_in_order_and_stops_at_long_arrays() -> None:
    twice = aligned(["x", "a", "x", "b"], ["a", "x", "b", "x"])
    assert twice.kept == 3 and len(twice.moved) == 1
    [(i, j)] = twice.moved
    assert ["x", "a", "x", "b"][i] == ["a", "x", "b", "x"][j] == "x"
    assert array_diff(list(range(MAX_ARRAY_ITEMS + 1)), [0]) is None
    # The report's form: entries cut at ``shown``, counted whole.
    whole = aligned(list(range(10)), list(range(9, -1, -1)))
    kept = whole.to_json(shown=3)
    assert kept["lengths"] == [10, 10] and kept["kept"] == 1
    assert len(kept["moved"]) == 3 and kept["counts"]["moved"] == 9
    assert all(isinstance(pair, list) and len(pair) == 2 for pair in kept["moved"])


def test_the_array_of_a_difference_is_its_innermost_array() -> None:
    [order] = diff_values({"tags": ["a", "b"]}, {"tags": ["b", "a"]}, ("body",))
    assert array_of(order) == ("body", "tags")
    [nested] = diff_values({"o": [{"l": [1, 2]}]}, {"o": [{"l": [1, 3]}]}, ("body",))
    assert nested.path == ("body", "o", 0, "l", 1) and array_of(nested) == ("body", "o", 0, "l")
    [plain] = diff_values({"a": 1}, {"a": 2}, ("body",))
    assert array_of(plain) is None
