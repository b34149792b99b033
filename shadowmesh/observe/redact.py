"""Credentials never leave in anything shadowmesh prints, logs or records.

The access log carries no header but User-Agent, X-Forwarded-For, X-Request-Id and Host, so
it never sees a credential. What shows whole headers to a person (the demo prints what httpbin
echoed) passes them through ``redact_headers`` first. The value becomes a short digest, so two
requests that sent the same credential still read the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

# reliability.md section 5.7's deny-list.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-amz-security-token",
    }
)


def redacted(value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"<redacted:sha256-{digest}>"


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy with every credential-bearing header's value replaced by ``redacted``."""
    return {
        name: redacted(str(value)) if name.lower() in SECRET_HEADERS else value
        for name, value in headers.items()
    }
