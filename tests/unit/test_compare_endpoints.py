"""Endpoint names: method plus path template, ID-like segments as {id}, and the cap."""

from __future__ import annotations

import pytest

from shadowmesh.compare.endpoints import (
    MAX_DISTINCT,
    OTHER,
    EndpointNamer,
    endpoint_name,
    is_id,
    template,
)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/users/42", "/users/{id}"),
        ("/users/42/orders?page=2", "/users/{id}/orders"),
        ("/u/6f1c3a3e-8d1b-4c5e-9f00-1234567890ab", "/u/{id}"),
        ("/u/6f1c3a3e8d1b4c5e9f001234567890ab", "/u/{id}"),
        ("/commit/0a1b2c3d", "/commit/{id}"),
        ("/blob/deadbeefcafe", "/blob/deadbeefcafe"),  # hex letters only: a word, kept
        ("/t/AbCdEf0123456789_-xy", "/t/{id}"),
        ("/status/500", "/status/{id}"),
        ("/v1/users/me", "/v1/users/me"),
        ("/api/v2/some-long-resource-name", "/api/v2/some-long-resource-name"),
        ("/", "/"),
        ("/anything/", "/anything/"),
        ("/price/12.50", "/price/{id}"),
        ("/api/skus/SKU-0189", "/api/skus/{id}"),
        ("/api/skus/SKU-0189/reviews", "/api/skus/{id}/reviews"),
        ("/orders/A7F3", "/orders/{id}"),
        ("/day/2024-05-01", "/day/{id}"),
        ("/oauth2/token", "/oauth2/token"),
        ("/api/v2.1/x", "/api/v2.1/x"),
        ("/hash/sha256", "/hash/sha256"),
    ],
)
def test_templates(target: str, expected: str) -> None:
    assert template(target) == expected


def test_short_or_wordy_segments_are_not_ids() -> None:
    assert not is_id("abc123")  # short token
    assert not is_id("v1")
    assert not is_id("abcdefghijklmnopqrstuvwxyz")  # no digit
    assert is_id("7")


def test_endpoint_name_upper_cases_the_method() -> None:
    assert endpoint_name("get", "/a/1") == "GET /a/{id}"


def test_the_number_of_endpoints_is_capped() -> None:
    namer = EndpointNamer(limit=3)
    names = [namer.name("GET", f"/p{c}") for c in "abcde"]
    assert names == ["GET /pa", "GET /pb", "GET /pc", OTHER, OTHER]
    assert namer.name("GET", "/pb") == "GET /pb"  # known ones keep their name


def test_the_cap_counts_endpoints_known_from_storage() -> None:
    namer = EndpointNamer({"GET /a", "GET /b"}, limit=2)
    assert namer.name("GET", "/c") == OTHER
    assert namer.name("GET", "/a") == "GET /a"


def test_a_position_whose_values_vary_becomes_an_id() -> None:
    namer = EndpointNamer()
    words = [f"item{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(60)]  # no digit, no id
    names = {namer.name("GET", f"/catalog/{w}/price") for w in words}
    assert "GET /catalog/{id}/price" in names
    assert len(names) == MAX_DISTINCT + 1  # the first ones keep their names, then one
    assert namer.name("GET", "/other/thing") == "GET /other/thing"


def test_user_patterns_come_first() -> None:
    namer = EndpointNamer(patterns=("/skus/{sku}", "/static/*"))
    assert namer.name("GET", "/skus/blue-widget?x=1") == "GET /skus/{sku}"
    assert namer.name("GET", "/static/css/a.css") == "GET /static/*"
    assert namer.name("GET", "/skus/blue-widget/reviews") == "GET /skus/blue-widget/reviews"


def test_dictionary_keys_that_look_like_ids_fold_into_one_field() -> None:
    from shadowmesh.compare.paths import field_of

    assert field_of(("body", "stock", "SKU-0189", "qty")) == "body.stock.*.qty"
    assert field_of(("body", "2024-05-01", "n")) == "body.*.n"
    assert field_of(("body", "items", 3, "id")) == "body.items[*].id"
    assert field_of(("body", "v2", "oauth2")) == "body.v2.oauth2"  # words stay
    assert field_of(("header", "x-b3-traceid")) == "header.x-b3-traceid"
