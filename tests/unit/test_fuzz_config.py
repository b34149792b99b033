"""Property tests of the config door: whatever comes in, a valid model or a clean ConfigError.

Four kinds of input, each a few hundred examples: any text; YAML built to hit PyYAML's corners
(tags, anchors, merge keys, nesting); the scenario's own files mutated byte-wise; and the
scenario's documents with a value somewhere replaced by any JSON-like value, which reaches deep
into each kind's validation. What is accepted must also compile into a route table, pass
analysis, and survive the store's JSON round trip unchanged (a restart re-reads it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from shadowmesh.errors import ConfigError, ConfigErrors
from shadowmesh.model.load import LoadResult, load_raw, load_text
from shadowmesh.routing.analyze import analyze
from shadowmesh.routing.table import RouteTable

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "httpbin"
SEED_TEXTS = [p.read_text() for p in sorted(EXAMPLES.glob("*.yaml"))]
SEED_DOCS = [d for text in SEED_TEXTS for d in yaml.safe_load_all(text) if isinstance(d, dict)]
# Raise it for a longer hunt: SHADOWMESH_FUZZ_EXAMPLES=20000 pytest tests/unit/test_fuzz_config.py
FUZZ = settings(
    max_examples=int(os.environ.get("SHADOWMESH_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# --- strategies ---------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["v1", "v2", "httpbin", "*", "", "0", "100", "1.5", "10s", "-1", "reviews"]),
)
JSON_LIKE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=12), inner, max_size=4),
    ),
    max_leaves=20,
)
YAML_BITS = [
    "apiVersion: networking.istio.io/v1\n",
    "apiVersion: v1\n",
    "kind: VirtualService\n",
    "kind: DestinationRule\n",
    "kind: Service\n",
    "kind: WorkloadEntry\n",
    "kind: Deployment\n",
    "metadata: {name: x}\n",
    "metadata:\n  name: &a httpbin\n",
    "spec: *a\n",
    "spec: !!python/object:os.system {}\n",
    "spec: !!binary aGVsbG8=\n",
    "spec: !!set {a, b}\n",
    "spec: !!timestamp 2001-12-14\n",
    "spec: !!int x\n",
    "spec: !!float nope\n",
    "spec: {<<: {a: 1}, b: 2}\n",
    "spec: {<<: [*a]}\n",
    "spec:\n  hosts: [httpbin]\n  http:\n  - route:\n    - destination: {host: httpbin}\n",
    "spec: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",  # noqa: E501
    "? [complex, key]\n: value\n",
    "1: integer key\n",
    "null: ~\n",
    "name: name\n",
    "---\n",
    "...\n",
    "%YAML 1.1\n---\n",
    "  - dangling\n",
    "\t\ttabs: here\n",
    "'unterminated\n",
    "a: b: c\n",
    "\x00\x01\x1b\n",
    "\ufeffbom: 1\n",
    "x: 1e400\n",
    "x: .nan\n",
    "x: 0x1F\n",
]


@st.composite
def yamlish(draw: st.DrawFn) -> str:
    return "".join(draw(st.lists(st.sampled_from(YAML_BITS), max_size=12)))


@st.composite
def mutated_seed(draw: st.DrawFn) -> str:
    """An example file with a few byte-level edits: deletions, repeats, insertions."""
    text = draw(st.sampled_from(SEED_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        start = draw(st.integers(0, len(text) - 1))
        end = draw(st.integers(start, min(len(text), start + 40)))
        edit = draw(st.sampled_from(["delete", "repeat", "insert"]))
        if edit == "delete":
            text = text[:start] + text[end:]
        elif edit == "repeat":
            text = text[:end] + text[start:end] + text[end:]
        else:
            bit = draw(st.one_of(st.text(max_size=8), st.sampled_from(YAML_BITS)))
            text = text[:start] + bit + text[start:]
    return text


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}
    return [(_replace(v, rest, new) if i == head else v) for i, v in enumerate(value)]


@st.composite
def mutated_document(draw: st.DrawFn) -> dict[str, Any]:
    """A scenario document with one to three values (anywhere) replaced by anything."""
    doc: Any = json.loads(json.dumps(draw(st.sampled_from(SEED_DOCS))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)[1:] or [()]))
        doc = _replace(doc, path, draw(JSON_LIKE))
    assume(isinstance(doc, dict))
    return dict(doc)


# --- the property -------------------------------------------------------------------------------


def check_text(text: str) -> LoadResult | None:
    """load_text's contract; for what is accepted, what apply and a restart do with it."""
    try:
        result = load_text(text, "fuzz.yaml")
    except ConfigErrors as exc:
        assert exc.errors and all(isinstance(e, ConfigError) for e in exc.errors)
        assert all(str(e) for e in exc.errors)  # every error says something
        return None
    except ConfigError as exc:
        assert str(exc)
        return None
    check_accepted(result)
    return result


def check_accepted(result: LoadResult) -> None:
    resources = [d.resource for d in result.documents]
    RouteTable.compile(resources)
    analyze(resources)
    for doc in result.documents:
        # What the store writes (JSON) must read back as the same resource.
        stored = json.loads(json.dumps(doc.resource.raw, sort_keys=True, default=str))
        again = load_raw(stored, "stored", doc.index, doc.resource.meta.namespace)
        assert again.resource == doc.resource


def check_raw(document: Any) -> None:
    try:
        doc = load_raw(document, "fuzz.json", 0)
    except ConfigError as exc:
        assert str(exc)
        return
    check_accepted(LoadResult([doc], []))


def test_the_seed_files_load() -> None:
    assert SEED_TEXTS
    for text in SEED_TEXTS:
        assert check_text(text) is not None


@FUZZ
@given(st.text(max_size=400))
@example("")
@example("\x00")
@example("- - - - -")
@example("a: &a [*a]")
@example("a: &a\n  b: *a\n")
@example("&a a: *a")
@example("kind: VirtualService\napiVersion: networking.istio.io/v1\n" + "spec: {http: [" * 60)
def test_any_text(text: str) -> None:
    check_text(text)


@FUZZ
@given(yamlish())
def test_yaml_corners(text: str) -> None:
    check_text(text)


@FUZZ
@given(mutated_seed())
def test_mutated_example_files(text: str) -> None:
    check_text(text)


@FUZZ
@given(mutated_document())
def test_documents_with_any_value_anywhere(document: dict[str, Any]) -> None:
    check_raw(document)
    # The same document as YAML and as JSON text goes through load_text alike.
    check_text(json.dumps(document, default=str))
    try:
        check_text(yaml.safe_dump(document))
    except (ValueError, yaml.YAMLError):
        pass  # a value PyYAML itself cannot write (a lone surrogate): nothing to load


@FUZZ
@given(JSON_LIKE)
def test_any_json_like_value(document: Any) -> None:
    check_raw(document)


def test_alias_bombs_are_refused_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: bomb}\nspec:\n  selector: {app: x}\n"
        "  ports: [{port: 80}]\n  externalIPs: *a8\n"
    )
    text = "\n".join(lines) + "\n---\n" + bomb
    assert check_text(text) is None
