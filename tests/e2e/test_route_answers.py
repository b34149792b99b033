"""A route's ``redirect`` and ``directResponse`` answered by the proxy itself, as Envoy answers
them (traffic-policy.md 1.7, 1.8, section 6): real ``shadowmesh serve``, real curl, and the
httpbin workloads seeing none of these requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Mesh

pytestmark = pytest.mark.e2e

ANSWERS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  http:
  - name: moved
    match:
    - uri:
        prefix: /old
    redirect:
      uri: /get
  - name: elsewhere
    match:
    - uri:
        prefix: /away
    redirect:
      authority: example.com
      scheme: https
      redirectCode: 308
  - name: renamed
    match:
    - uri:
        prefix: /v1/
    redirect:
      prefixRewrite: /v2/
      redirectCode: 302
  - name: down
    match:
    - uri:
        exact: /maintenance
    directResponse:
      status: 503
      body:
        string: "back at noon"
    headers:
      response:
        set:
          retry-after: "3600"
  - name: json
    match:
    - uri:
        exact: /config.json
    directResponse:
      status: 200
      body:
        bytes: eyJvayI6IHRydWV9
    headers:
      response:
        set:
          content-type: application/json
  - name: empty
    match:
    - uri:
        exact: /nothing
    directResponse:
      status: 204
  - route:
    - destination:
        host: httpbin
"""


def head_and_body(mesh: Mesh, path: str, *args: str) -> tuple[list[str], str]:
    out = mesh.curl_body(path, args=["-i", *args])
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    return head.splitlines(), body


def header(head: list[str], name: str) -> str | None:
    for line in head[1:]:
        key, _, value = line.partition(":")
        if key.lower() == name:
            return value.strip()
    return None


@pytest.fixture
def answering(mesh: Mesh) -> Mesh:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml")
    run = mesh.apply(mesh.write("answers.yaml", ANSWERS))
    assert "redirect" not in run.stderr and "directResponse" not in run.stderr, run.stderr
    return mesh


def test_redirect_keeps_the_query_and_sends_nothing_upstream(answering: Mesh) -> None:
    mesh = answering
    head, body = head_and_body(mesh, "/old/page?x=1")
    assert head[0].split()[1] == "301"
    assert header(head, "location") == f"http://{mesh.authority}/get?x=1"
    assert header(head, "content-length") == "0" and body == ""
    # curl -L follows it to httpbin's /get through the proxy.
    assert '"x": "1"' in mesh.curl_body("/old/page?x=1", args=["-L"])
    records = mesh.proxy.records_settled(3)
    assert [(r.status, r.response_flags, r.upstream_cluster) for r in records[:2]] == [
        (301, "-", "-"),
        (301, "-", "-"),
    ]
    assert records[2].status == 200
    assert [e.target for e in mesh.v1.settled() + mesh.v2.settled()] == ["/get?x=1"]


def test_redirect_to_another_authority_and_scheme(answering: Mesh) -> None:
    head, _ = head_and_body(answering, "/away/a")
    assert head[0].split()[1] == "308"
    assert header(head, "location") == "https://example.com/away/a"


def test_redirect_prefix_rewrite(answering: Mesh) -> None:
    mesh = answering
    head, _ = head_and_body(mesh, "/v1/items?page=2")
    assert head[0].split()[1] == "302"
    assert header(head, "location") == f"http://{mesh.authority}/v2/items?page=2"


def test_direct_response_with_a_string_body(answering: Mesh) -> None:
    mesh = answering
    head, body = head_and_body(mesh, "/maintenance")
    assert head[0].split()[1] == "503"
    assert body == "back at noon"
    assert header(head, "content-type") == "text/plain"
    assert header(head, "content-length") == str(len("back at noon"))
    assert header(head, "retry-after") == "3600"
    assert mesh.v1.settled() == [] and mesh.v2.settled() == []
    (record,) = mesh.proxy.records_settled(1)
    assert (record.status, record.response_flags) == (503, "-")


def test_direct_response_with_bytes_and_its_own_content_type(answering: Mesh) -> None:
    head, body = head_and_body(answering, "/config.json")
    assert head[0].split()[1] == "200"
    assert body == '{"ok": true}'
    assert header(head, "content-type") == "application/json"


def test_direct_response_without_a_body(answering: Mesh) -> None:
    head, body = head_and_body(answering, "/nothing")
    assert head[0].split()[1] == "204"
    assert body == "" and header(head, "content-type") is None


def test_head_gets_the_answer_without_its_body(answering: Mesh) -> None:
    head, body = head_and_body(answering, "/maintenance", "-I")
    assert head[0].split()[1] == "503" and body == ""
    assert header(head, "content-length") == str(len("back at noon"))


def test_other_paths_still_reach_httpbin(answering: Mesh) -> None:
    assert answering.statuses("/status/200") == [200]
