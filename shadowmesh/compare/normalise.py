"""A captured response as a comparable tree, redacted before anything else sees it.

The tree is ``{"status": int, "header": {name: value}, "body": ...}``: header names lower-cased
(repeated headers joined with ", "), the body decoded (gzip, deflate) and parsed by its content
type: JSON as JSON, a form as ``{name: value}``, text as a list of lines, anything else as
``{"length", "sha256"}``. A truncated body is compared by its captured prefix's hash and never
parsed: a cut JSON document would show differences that are not there. Nothing here raises on
what a server sent; what could not be read falls back to text, then to a hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from shadowmesh.compare.capture import CapturedResponse
from shadowmesh.model.comparison import (
    ANY_DEPTH,
    ANY_INDEX,
    ANY_KEY,
    Pattern,
    PatternSegment,
    RedactRule,
)

BodyKind = Literal["empty", "json", "form", "text", "binary", "truncated", "undecodable"]

# Transport framing, not content: a chunked primary and a Content-Length candidate are the same
# answer, and a body that differs is reported once, in the body.
TRANSPORT_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "content-length",
    }
)
# A gzip bomb must not take the analysis thread's memory: decoding stops here.
MAX_DECODED_BYTES = 32 * 1024 * 1024
_TEXT_TYPES = ("application/xml", "application/javascript", "application/x-ndjson")


@dataclass(frozen=True)
class Normalised:
    tree: dict[str, Any]
    body_kind: BodyKind


class Redactor:
    """Replaces sensitive values with a keyed hash: equal secrets stay equal, so a difference is
    still seen, but the value cannot be read back. The key is random per process.

    Body patterns are matched case-insensitively in one walk of the tree: ``body.**.<name>``
    rules (the defaults) by a set lookup per key, any other pattern by following it down
    (a small NFA: the states are positions in the patterns), so the cost is linear in the
    body's size whatever the number of rules.
    """

    def __init__(self, rules: Iterable[RedactRule], key: bytes | None = None) -> None:
        patterns = [r.path for r in rules]
        self._headers = frozenset(
            str(p[1]).lower() for p in patterns if p[0] == "header" and len(p) == 2
        )
        self._query = frozenset(str(p[1]) for p in patterns if p[0] == "query" and len(p) == 2)
        body = [_folded(p) for p in patterns if p[0] == "body" and len(p) > 1]
        self._anywhere = frozenset(str(p[2]) for p in body if _is_anywhere(p))
        self._patterns: tuple[Pattern, ...] = tuple(p for p in body if not _is_anywhere(p))
        self._key = key if key is not None else os.urandom(32)

    def mask(self, value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        digest = hmac.new(self._key, text.encode("utf-8", "replace"), hashlib.sha256)
        return f"<redacted:{digest.hexdigest()[:10]}>"

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {k: self.mask(v) if k in self._headers else v for k, v in headers.items()}

    def body(self, tree: Any) -> Any:
        if not self._anywhere and not self._patterns:
            return tree
        start = _closure(self._patterns, {(i, 1) for i in range(len(self._patterns))})
        return self._walk(tree, start)

    def _walk(self, value: Any, states: frozenset[tuple[int, int]]) -> Any:
        if isinstance(value, dict):
            return {k: self._child(v, k, states) for k, v in value.items()}
        if isinstance(value, list):
            return [self._child(v, i, states) for i, v in enumerate(value)]
        return value

    def _child(self, value: Any, segment: str | int, states: frozenset[tuple[int, int]]) -> Any:
        if isinstance(segment, str) and segment.lower() in self._anywhere:
            return self.mask(value)
        if not states:
            return self._walk(value, states)
        after = _step(self._patterns, states, segment)
        if any(p == len(self._patterns[i]) for i, p in after):
            return self.mask(value)
        return self._walk(value, after)

    def target(self, target: str) -> str:
        """The request path and query as stored in examples, sensitive query values masked."""
        if "?" not in target or not self._query:
            return target
        parts = urlsplit(target)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = "&".join(
            f"{name}={self.mask(value) if name.lower() in self._query else value}"
            for name, value in pairs
        )
        return urlunsplit(("", "", parts.path, query, ""))


def _folded(pattern: Pattern) -> Pattern:
    return tuple(s.lower() if isinstance(s, str) else s for s in pattern)


def _is_anywhere(pattern: Pattern) -> bool:
    return len(pattern) == 3 and pattern[1] == ANY_DEPTH and isinstance(pattern[2], str)


def _closure(
    patterns: tuple[Pattern, ...], states: Iterable[tuple[int, int]]
) -> frozenset[tuple[int, int]]:
    """The states plus those reached by letting ``**`` match nothing."""
    out: set[tuple[int, int]] = set()
    todo = list(states)
    while todo:
        i, p = todo.pop()
        if (i, p) in out:
            continue
        out.add((i, p))
        if p < len(patterns[i]) and patterns[i][p] == ANY_DEPTH:
            todo.append((i, p + 1))
    return frozenset(out)


def _step(
    patterns: tuple[Pattern, ...], states: frozenset[tuple[int, int]], segment: str | int
) -> frozenset[tuple[int, int]]:
    key = segment.lower() if isinstance(segment, str) else segment
    moved: set[tuple[int, int]] = set()
    for i, p in states:
        pattern = patterns[i]
        if p == len(pattern):
            continue
        wanted = pattern[p]
        if wanted == ANY_DEPTH:
            moved.add((i, p))  # ** takes this segment and may take more
        elif _segment_matches(wanted, key):
            moved.add((i, p + 1))
    return _closure(patterns, moved)


def _segment_matches(wanted: PatternSegment, key: str | int) -> bool:
    if wanted == ANY_INDEX:
        return isinstance(key, int)
    if wanted == ANY_KEY:
        return isinstance(key, str)
    return wanted == key and isinstance(wanted, int) == isinstance(key, int)


def normalise(response: CapturedResponse, redactor: Redactor) -> Normalised:
    headers = redactor.headers(_headers(response.headers))
    body, kind = _body(response, headers)
    tree = {"status": response.status, "header": headers, "body": redactor.body(body)}
    return Normalised(tree, kind)


def _headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key in TRANSPORT_HEADERS:
            continue
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _body(response: CapturedResponse, headers: dict[str, str]) -> tuple[Any, BodyKind]:
    raw = response.body
    if response.truncated:
        return _digest(raw, truncated=True), "truncated"
    if not raw:
        return None, "empty"
    decoded = decode(raw, headers.get("content-encoding", ""))
    if decoded is None:
        return _digest(raw), "undecodable"
    return parse_body(decoded, headers.get("content-type", ""))


def decode(raw: bytes, content_encoding: str) -> bytes | None:
    """The body with its content codings undone (last applied first); None if it cannot be."""
    data = raw
    for coding in reversed([c.strip().lower() for c in content_encoding.split(",") if c.strip()]):
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            result = _inflate(data, 16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            # RFC 9110's deflate is zlib-wrapped; some servers send it raw.
            result = _inflate(data, zlib.MAX_WBITS)
            if result is None:
                result = _inflate(data, -zlib.MAX_WBITS)
        else:
            return None  # br, zstd, ...: no decoder in the standard library
        if result is None:
            return None
        data = result
    return data


def _inflate(data: bytes, wbits: int) -> bytes | None:
    try:
        inflater = zlib.decompressobj(wbits)
        out = inflater.decompress(data, MAX_DECODED_BYTES)
    except zlib.error:
        return None
    if inflater.unconsumed_tail:
        return None  # larger than MAX_DECODED_BYTES once decoded
    return out


def parse_body(data: bytes, content_type: str) -> tuple[Any, BodyKind]:
    media, charset = _media_type(content_type)
    if not data:
        return None, "empty"
    if media == "application/json" or media.endswith("+json") or not media and _looks_json(data):
        parsed = _json(data, charset)
        if parsed is not _NOT_JSON:
            return parsed, "json"
    if media == "application/x-www-form-urlencoded":
        text = _text(data, charset)
        if text is not None:
            return _form(text), "form"
    if _textual(media):
        text = _text(data, charset)
        if text is not None:
            return text.splitlines(), "text"
    return _digest(data), "binary"


def _textual(media: str) -> bool:
    # JSON and forms that did not parse are still text; so is a body with no content type.
    return (
        not media
        or media.startswith("text/")
        or media.endswith(("+xml", "+json"))
        or media in _TEXT_TYPES
        or media in ("application/json", "application/x-www-form-urlencoded")
    )


def _media_type(content_type: str) -> tuple[str, str]:
    media, *params = content_type.split(";")
    charset = "utf-8"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    return media.strip().lower(), charset


_NOT_JSON = object()


def _looks_json(data: bytes) -> bool:
    return data.lstrip()[:1] in (b"{", b"[")


def _json(data: bytes, charset: str) -> Any:
    text = _text(data, charset)
    if text is None:
        return _NOT_JSON
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _text(data: bytes, charset: str) -> str | None:
    try:
        text = data.decode(charset)
    except (LookupError, UnicodeDecodeError):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    # NUL bytes mean binary, whatever the content type claims.
    return None if "\x00" in text else text


def _form(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        if name in out:
            previous = out[name]
            out[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[name] = value
    return out


def _digest(data: bytes, *, truncated: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if truncated:
        out["truncated"] = True
    return out
