"""The response head relayed to the client (pure): hop-by-hop removed, framing and codings."""

from __future__ import annotations

from shadowmesh.http.response import response_headers


def test_transfer_codings_other_than_chunked_are_kept() -> None:
    cases = {
        b"chunked": b"",
        b"gzip, chunked": b"gzip",
        b"gzip,  CHUNKED ": b"gzip",
        b"gzip": b"gzip",  # no final chunked: delimited by the close, re-chunked by the proxy
    }
    for value, coding in cases.items():
        out, length, got = response_headers([(b"transfer-encoding", value), (b"x", b"1")])
        assert (out, length, got) == ([(b"x", b"1")], None, coding), value
    _, _, split = response_headers(
        [(b"transfer-encoding", b"gzip"), (b"transfer-encoding", b"chunked")]
    )
    assert split == b"gzip"


def test_without_transfer_encoding_the_codings_are_none() -> None:
    out, length, coding = response_headers(
        [(b"content-length", b"3"), (b"connection", b"x"), (b"x", b"1")]
    )
    assert (out, length, coding) == ([], b"3", None)
