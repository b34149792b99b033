"""The demo's client: plain HTTP requests through shadowmesh's outbound forward proxy.

It plays the tutorial's ``curl http://httpbin:8000/headers`` from a pod whose sidecar captures
outbound traffic: the request names the service, and the proxy resolves it, with no DNS.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass

USER_AGENT = "shadowmesh-demo"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def get_via_proxy(
    proxy_host: str, proxy_port: int, urls: list[str], timeout: float = 10.0
) -> list[Answer]:
    """GET each absolute http:// URL through the forward proxy, on one keep-alive connection."""
    answers = []
    conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)
    try:
        for url in urls:
            # An absolute URL makes http.client send it as the request target and take the Host
            # header from it, which is what curl -x does.
            conn.request("GET", url, headers={"User-Agent": USER_AGENT})
            resp = conn.getresponse()
            answers.append(Answer(resp.status, resp.read()))
    finally:
        conn.close()
    return answers
