"""The Comparison kind: parsing, strict validation with field paths, defaults, cross-references,
and the helpers the data plane calls (comparisons_for, sampled)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shadowmesh.control.controller import Controller
from shadowmesh.control.kinds import resolve_kind
from shadowmesh.control.store import Store
from shadowmesh.errors import ConfigErrors
from shadowmesh.model.comparison import (
    ANY_DEPTH,
    ANY_INDEX,
    ANY_KEY,
    DEFAULT_REDACTIONS,
    DEFAULT_THRESHOLDS,
    Comparison,
    IgnoreRule,
    RedactRule,
    Thresholds,
    ToleranceRule,
    comparisons_for,
    format_path,
    parse_path,
    sampled,
)
from shadowmesh.model.load import load_text
from shadowmesh.model.resources import Meta

FULL = """\
apiVersion: shadowmesh.io/v1alpha1
kind: Comparison
metadata: {name: httpbin-v2, namespace: shop}
spec:
  host: httpbin
  primary: {subset: v1}
  candidate: {subset: v2}
  baseline: {subset: v1b}
  sample: {percentage: 25}
  maxBodyBytes: 4096
  maxExampleChars: 2000
  ignore:
  - header.date
  - {path: body.origin, pattern: "[0-9.]+"}
  - body.items[*].ts
  redact: [X-Session, body.user.ssn, query.sig]
  thresholds:
    alpha: 0.05
    minPairs: 100
    minFieldEffect: {relative: 20, absolute: 0.5}
    latencyMinEffect: {relative: 25, absoluteMs: 3}
    timestampToleranceSeconds: 5
  endpoints: ["/skus/{sku}", "/static/*"]
  tolerance: [{path: "body.items[*].price", absolute: 0.01, relative: 0.001}]
  unordered: [body.hits]
"""
MINIMAL = """\
apiVersion: shadowmesh.io/v1alpha1
kind: Comparison
metadata: {name: httpbin-v2}
spec:
  host: httpbin
  primary: {subset: v1}
  candidate: {subset: v2}
"""


def load_one(text: str) -> Comparison:
    result = load_text(text, "c.yaml")
    [document] = result.documents
    assert isinstance(document.resource, Comparison)
    return document.resource


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "c.yaml")
    return [str(e) for e in caught.value.errors]


def spec(body: str) -> str:
    return MINIMAL.split("spec:\n")[0] + "spec:\n" + textwrap.indent(textwrap.dedent(body), "  ")


def test_full_spec_is_parsed() -> None:
    c = load_one(FULL)
    assert c.meta == Meta("httpbin-v2", "shop")
    assert (c.host, c.primary, c.candidate, c.baseline) == ("httpbin", "v1", "v2", "v1b")
    assert c.sample_percentage == 25.0
    assert c.max_body_bytes == 4096
    assert c.max_example_chars == 2000
    assert c.ignore == (
        IgnoreRule(("header", "date")),
        IgnoreRule(("body", "origin"), "[0-9.]+"),
        IgnoreRule(("body", "items", ANY_INDEX, "ts")),
    )
    # Defaults first, then the user's; a bare header name is a header, lower-cased.
    assert c.redact[: len(DEFAULT_REDACTIONS)] == DEFAULT_REDACTIONS
    assert c.redact[len(DEFAULT_REDACTIONS) :] == (
        RedactRule(("header", "x-session")),
        RedactRule(("body", "user", "ssn")),
        RedactRule(("query", "sig")),
    )
    assert c.fqdn == "httpbin.shop.svc.cluster.local"
    assert c.raw["spec"]["maxBodyBytes"] == 4096
    assert c.endpoints == ("/skus/{sku}", "/static/*")
    assert c.tolerance == (ToleranceRule(("body", "items", ANY_INDEX, "price"), 0.01, 0.001),)
    assert c.unordered == (("body", "hits"),)
    # Percentages in the spec, as Diffy's thresholds; fractions in the model.
    assert c.thresholds == Thresholds(
        alpha=0.05,
        min_pairs=100,
        min_excess=0.005,
        min_relative=0.2,
        latency_min_relative=0.25,
        latency_min_absolute_ms=3.0,
        timestamp_tolerance_s=5.0,
    )


def test_defaults() -> None:
    c = load_one(MINIMAL)
    assert c.baseline is None
    assert c.sample_percentage == 100.0
    assert c.max_body_bytes == 1_048_576
    assert c.max_example_chars == 8_000
    assert c.ignore == ()
    assert c.redact == DEFAULT_REDACTIONS
    assert c.thresholds == DEFAULT_THRESHOLDS
    assert (c.thresholds.alpha, c.thresholds.min_pairs) == (0.01, 30)
    texts = [r.text for r in DEFAULT_REDACTIONS]
    for header in ("authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"):
        assert f"header.{header}" in texts
    assert "body.**.password" in texts


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("primary: {subset: v1}\ncandidate: {subset: v2}\n", "field spec.host: host is required"),
        ("host: httpbin\ncandidate: {subset: v2}\n", "field spec.primary: primary is required"),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {}\n",
            "field spec.candidate.subset: subset is required",
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v2}\nsampel: {}\n",
            'field spec.sampel: unknown field "sampel" (did you mean "sample"?)',
        ),
        (
            "host: httpbin\nprimary: {subset: v1, weight: 3}\ncandidate: {subset: v2}\n",
            'field spec.primary.weight: unknown field "weight"',
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v1}\n",
            'field spec.candidate: subset "v1" is already the primary',
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v2}\n"
            "sample: {percentage: 120}\n",
            "field spec.sample.percentage: must be between 0 and 100, got 120",
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v2}\nmaxBodyBytes: 0\n",
            "field spec.maxBodyBytes: must be between 1 and",
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v2}\nmaxExampleChars: 10\n",
            "field spec.maxExampleChars: must be between 200 and 1000000, got 10",
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v2}\nmaxBodyBytes: '1MB'\n",
            'field spec.maxBodyBytes: must be an integer, got a string ("1MB")',
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v2}\n"
            "ignore: [headers.date]\n",
            'field spec.ignore[0]: field path "headers.date" must start with "status", '
            '"header" or "body"',
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v2}\n"
            "ignore: [{path: body.x, pattern: '(['}]\n",
            "field spec.ignore[0].pattern: invalid regular expression",
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v2}\n"
            "ignore: [{pattern: x}]\n",
            "field spec.ignore[0].path: path is required",
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v2}\n"
            "ignore: ['body.a[x]']\n",
            'field spec.ignore[0]: invalid field path "body.a[x]" at character 7',
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v2}\nredact: [foo.bar]\n",
            'field spec.redact[0]: field path "foo.bar" must start with "header", "body" or '
            '"query"',
        ),
        (
            "host: httpbin\nprimary: {subset: v1}\ncandidate: {subset: v2}\nredact: [3]\n",
            "field spec.redact[0]: must be a header name or a field path, got an integer (3)",
        ),
        (
            "host: Http_Bin\nprimary: {subset: v1}\ncandidate: {subset: v2}\n",
            "field spec.host:",
        ),
        (
            "host: h\nprimary: {subset: v1}\ncandidate: {subset: v2}\nthresholds: {alpha: 1}\n",
            "field spec.thresholds.alpha: must be above 0 and below 0.5, got 1",
        ),
        (
            "host: h\nprimary: {subset: v1}\ncandidate: {subset: v2}\nthresholds: {minPairs: 0}\n",
            "field spec.thresholds.minPairs: must be between 1 and 1000000, got 0",
        ),
        (
            "host: h\nprimary: {subset: v1}\ncandidate: {subset: v2}\n"
            "thresholds: {latencyMinEffect: {relative: 150}}\n",
            "field spec.thresholds.latencyMinEffect.relative: must be a percentage between 0 "
            "and 100, got 150",
        ),
        (
            "host: h\nprimary: {subset: v1}\ncandidate: {subset: v2}\n"
            "thresholds: {latencyMinEffect: {ms: 3}}\n",
            'field spec.thresholds.latencyMinEffect.ms: unknown field "ms"',
        ),
        (
            "host: h\nprimary: {subset: v1}\ncandidate: {subset: v2}\nthresholds: {alpah: 0.1}\n",
            'field spec.thresholds.alpah: unknown field "alpah" (did you mean "alpha"?)',
        ),
        (
            "host: h\nprimary: {subset: v1}\ncandidate: {subset: v2}\n"
            "tolerance: [{path: header.x, absolute: 1}]\n",
            'field spec.tolerance[0].path: field path "header.x" must start with "body"',
        ),
        (
            "host: h\nprimary: {subset: v1}\ncandidate: {subset: v2}\n"
            "tolerance: [{path: body.x, absolute: -1}]\n",
            "field spec.tolerance[0].absolute: must be 0 or more, got -1",
        ),
        (
            "host: h\nprimary: {subset: v1}\ncandidate: {subset: v2}\nunordered: [3]\n",
            "field spec.unordered[0]: must be a field path, got an integer (3)",
        ),
        (
            "host: h\nprimary: {subset: v1}\ncandidate: {subset: v2}\nendpoints: ['skus/{x}']\n",
            'field spec.endpoints[0]: invalid endpoint pattern "skus/{x}": a path starting',
        ),
    ],
)
def test_invalid_specs_name_the_field(body: str, expected: str) -> None:
    errors = errors_of(spec(body))
    assert any(expected in e for e in errors), errors
    assert all("Comparison 'httpbin-v2'" in e for e in errors), errors


def test_every_error_is_reported_at_once() -> None:
    errors = errors_of(spec("host: 3\nprimary: {}\ncandidate: {subset: v2}\nbogus: 1\n"))
    assert len(errors) == 3, errors


def test_wrong_api_version_is_refused() -> None:
    text = MINIMAL.replace("shadowmesh.io/v1alpha1", "networking.istio.io/v1")
    [error] = errors_of(text)
    assert 'no matches for kind "Comparison" in version "networking.istio.io/v1"' in error
    assert "use apiVersion shadowmesh.io/v1alpha1" in error


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("status", ("status",)),
        ("header.content-type", ("header", "content-type")),
        ("body.headers.X-Amzn-Trace-Id", ("body", "headers", "X-Amzn-Trace-Id")),
        ("body.items[3].id", ("body", "items", 3, "id")),
        ("body.items[*].id", ("body", "items", ANY_INDEX, "id")),
        ("body.*.id", ("body", ANY_KEY, "id")),
        ("body.**.password", ("body", ANY_DEPTH, "password")),
        ('body["a.b"]["x y"]', ("body", "a.b", "x y")),
        ("body[0][1]", ("body", 0, 1)),
    ],
)
def test_path_dialect_round_trips(text: str, parsed: tuple[object, ...]) -> None:
    assert parse_path(text) == parsed
    assert format_path(parsed) == text


@pytest.mark.parametrize("bad", ["", "body.", "body..x", ".body", "body[", "body.a*b", "body[-1]"])
def test_bad_paths_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_path(bad)


def test_comparisons_for_picks_comparisons_sorted() -> None:
    text = MINIMAL.replace("httpbin-v2}", "b}") + "---\n" + MINIMAL.replace("httpbin-v2}", "a}")
    text += "---\n" + textwrap.dedent(
        """\
        apiVersion: v1
        kind: Service
        metadata: {name: httpbin}
        spec:
          ports: [{port: 8000}]
          selector: {app: httpbin}
        """
    )
    resources = [d.resource for d in load_text(text, "x.yaml").documents]
    assert [c.meta.name for c in comparisons_for(resources)] == ["a", "b"]


def test_sampling_is_deterministic_and_in_the_right_direction() -> None:
    c = load_one(MINIMAL)
    thirty = Comparison(c.meta, c.host, c.primary, c.candidate, sample_percentage=30.0)
    ids = [f"request-{i}" for i in range(20_000)]
    chosen = [i for i in ids if sampled(thirty, i)]
    # 30 % of the ids, not 70 %: the inverted check is the classic mistake.
    assert 0.28 < len(chosen) / len(ids) < 0.32
    assert chosen == [i for i in ids if sampled(thirty, i)]
    never = Comparison(c.meta, c.host, c.primary, c.candidate, sample_percentage=0.0)
    assert not any(sampled(never, i) for i in ids[:1000])
    assert all(sampled(c, i) for i in ids[:1000])


def test_kind_names_resolve_like_kubectl() -> None:
    for name in ("cmp", "comparison", "comparisons", "Comparisons", "comparison.shadowmesh.io"):
        assert resolve_kind(name).kind == "Comparison"
    assert resolve_kind("cmp").resource == "comparison.shadowmesh.io"


ROUTES = """\
apiVersion: v1
kind: Service
metadata: {name: httpbin}
spec:
  ports: [{port: 8000}]
  selector: {app: httpbin}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {host: httpbin, subset: v1}
MIRROR"""


def controller(tmp_path: Path) -> Controller:
    c = Controller(Store(tmp_path / "state"), lambda table: None)
    c.start()
    return c


def test_apply_warns_when_the_candidate_is_not_mirrored(tmp_path: Path) -> None:
    control = controller(tmp_path)
    control.apply_files([("routes.yaml", ROUTES.replace("MIRROR", ""))])
    outcome = control.apply_files([("cmp.yaml", MINIMAL)])
    assert outcome.lines == ["comparison.shadowmesh.io/httpbin-v2 created"]
    assert outcome.warnings == [
        "Comparison default/httpbin-v2: subset v2 is not mirrored by any route of host "
        "httpbin; nothing will be compared"
    ]


def test_apply_is_quiet_when_the_candidate_is_mirrored(tmp_path: Path) -> None:
    control = controller(tmp_path)
    mirror = "    mirror: {host: httpbin, subset: v2}\n"
    outcome = control.apply_files(
        [("routes.yaml", ROUTES.replace("MIRROR", mirror)), ("cmp.yaml", MINIMAL)]
    )
    assert [w for w in outcome.warnings if "Comparison" in w] == []
    items = control.get("cmp").items
    assert [i["metadata"]["name"] for i in items] == ["httpbin-v2"]
    gone = control.delete("comparisons", ["httpbin-v2"])
    assert gone.lines == ['comparison.shadowmesh.io "httpbin-v2" deleted']


def test_apply_warns_about_a_host_no_route_serves(tmp_path: Path) -> None:
    outcome = controller(tmp_path).apply_files([("cmp.yaml", MINIMAL)])
    assert outcome.warnings == [
        "Comparison default/httpbin-v2: no VirtualService routes host httpbin; "
        "nothing will be compared"
    ]


def test_a_comparison_does_not_disturb_the_route_table(tmp_path: Path) -> None:
    tables = []
    control = Controller(Store(tmp_path / "state"), tables.append)
    control.start()
    control.apply_files([("all.yaml", ROUTES.replace("MIRROR", "") + "---\n" + MINIMAL)])
    assert tables[-1].ports == frozenset({8000})


def test_a_second_comparison_of_one_host_and_primary_is_refused_at_apply(tmp_path: Path) -> None:
    control = controller(tmp_path)
    control.apply_files([("cmp.yaml", MINIMAL)])
    second = MINIMAL.replace("name: httpbin-v2", "name: httpbin-v3").replace("v2}", "v3}")
    with pytest.raises(ConfigErrors) as caught:
        control.apply_files([("v3.yaml", second)])
    [error] = caught.value.errors
    assert str(error).startswith("v3.yaml")
    assert (
        "Comparison default/httpbin-v3: host httpbin with primary subset v1 is also compared by "
        "Comparison default/httpbin-v2; one Comparison per host and primary" in str(error)
    )
    assert [i["metadata"]["name"] for i in control.get("cmp").items] == ["httpbin-v2"]
    # Another primary, or re-applying the same one, is fine.
    control.apply_files([("cmp.yaml", MINIMAL)])
    other = second.replace("primary: {subset: v1}", "primary: {subset: v0}")
    control.apply_files([("v3.yaml", other)])
