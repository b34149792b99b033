"""The ports between the codecs and the per-request stream: the data plane's one seam.

A codec owns a protocol's framing and its per-message (per-stream) state; the stream
(``proxy.stream.ProxyStream``) owns proxy policy and never sees bytes on the wire. They meet
through three plain base classes (not ``Protocol``s: a call through a native base class is a
vtable call under mypyc, see ``_hotpath.py`` rule 4):

    downstream codec (h1 today)                      upstream codec (h1 today)
      StreamOpener.open(port, head) ─┐          ┌── Stream.response_head/data/trailers/end
      Stream.request_data/trailers/  │          │   Stream.upstream_failed/writable/read_done
             end, downstream_failed  ▼          │
                                  Stream (one request) ──► UpstreamPort.send_head/data/
      DownstreamPort.send_head/data/ ◄──┘                     trailers/end, reset
             trailers/end/local, reset

- ``Stream``: what a codec tells one request's stream, both directions. The downstream codec
  opens a stream per request head (``StreamOpener``) and lets it ``start`` when it may answer
  (HTTP/1 answers pipelined requests in order); the upstream codec delivers the response to
  the stream its request came from. A shadow copy (``mirror.dispatcher.ShadowCopy``) is a
  stream of its own to the upstream codec.
- ``DownstreamPort``: what the stream calls on its client's side, one port per request (for
  HTTP/1 the per-message writer, which knows the request's version, method and framing).
- ``UpstreamPort``: what the stream calls on its upstream's side, one per attempt (for
  HTTP/1 the pooled connection itself, which serves one request at a time).

How HTTP/2 fits (``shared/reference/h2-grpc-gateway.md`` section 1), without changing a
stream: an h2 downstream codec is one connection with many streams; per HEADERS frame it opens
a ``Stream`` with a ``DownstreamPort`` of its own that holds the stream id, and calls ``start``
at once (no pipelining order). ``request_data`` is called per DATA frame; the codec
acknowledges the received bytes (``acknowledge_received_data``) only when the stream has not
paused it (``pause``/``resume`` are per stream: for h2 they stop and restart WINDOW_UPDATEs,
Envoy's ``readDisable``; for HTTP/1 they pause the socket). ``request_trailers`` carries
gRPC's trailers (HTTP/1 drops a chunked body's, as Envoy does). ``downstream_failed`` is
RST_STREAM from the client (flag ``DR``) or the connection's end (``DC``). ``send_head``
gets the end-to-end headers (hop-by-hop removed by the stream), so the h2 codec adds
``:status`` and sends HEADERS; ``send_data`` sends DATA within the peer's window, holding the
rest and telling the stream ``upstream_writable(False)``-style back-pressure through
``downstream_writable``; ``send_trailers`` ends the stream with HEADERS (END_STREAM);
``reset`` sends RST_STREAM (CANCEL) where HTTP/1 can only close the connection. An h2 upstream
codec gives each attempt an ``UpstreamPort`` for one stream of a shared connection; a
REFUSED_STREAM reset arrives as ``upstream_failed("refused-stream")`` and GOAWAY above the
stream's id as ``"reset-before-request"`` (both safe to retry), other resets as ``"reset"``.
``cork``/``uncork`` hold writes until the downstream read that produced them has been parsed
whole (a later malformed byte then sends nothing upstream); h2 frames are validated as they
arrive, so its codec's ``hold`` never defers.

Names of headers are lower-case bytes everywhere (HTTP/2's rule; HTTP/1 codecs lower-case them).
"""

from __future__ import annotations

from typing import Final

from mypy_extensions import mypyc_attr

from shadowmesh.http.request import RequestHead
from shadowmesh.http.wire import Header, Headers
from shadowmesh.routing.decision import NO_PEER, Peer

# ``UpstreamPort.send_head``'s ``length`` when the request has no Content-Length.
NO_LENGTH: Final = -1
# ... and when its body comes in chunks of unknown total (HTTP/1 chunked; any h2 body).
STREAMED: Final = -2


@mypyc_attr(allow_interpreted_subclasses=True)
class Stream:
    """One request's events, from the downstream codec and from the upstream codec."""

    # --- from the downstream codec ------------------------------------------------------

    def start(self) -> None:
        """The stream may route and answer now (HTTP/1: it is at the front of the pipeline)."""

    def request_data(self, data: bytes) -> None:
        """A piece of the request body, as received (de-chunked)."""

    def request_trailers(self, trailers: Headers) -> None:
        """The request's trailers (before ``request_end``)."""

    def request_end(self) -> None:
        """The request is complete."""

    def downstream_failed(self, status: int, flag: str) -> None:
        """The client's side broke: gone (``DC``), reset (``DR``), idle (``SI``), or its bytes
        turned out malformed (``DPE``, with the ``status`` it is logged with; 0: keep)."""

    def downstream_writable(self, writable: bool) -> None:
        """Flow control: the client stopped (False) or resumed (True) taking the response."""

    def downstream_read_done(self) -> None:
        """The read the stream's writes were held for (``DownstreamPort.hold``) is parsed."""

    def stream_idle(self, reset: bool) -> None:
        """Nothing moved either way for the stream idle timeout."""

    # --- from the upstream codec --------------------------------------------------------

    def response_head(self, status: int, reason: bytes, headers: Headers, keep_alive: bool) -> None:
        """The response head (``keep_alive``: the upstream connection may serve another)."""

    def response_data(self, data: bytes) -> None:
        """A piece of the response body (de-chunked)."""

    def response_trailers(self, trailers: Headers) -> None:
        """The response's trailers (before ``response_end``)."""

    def response_end(self) -> None:
        """The response is complete."""

    def upstream_failed(self, reason: str, protocol_error: bool = False) -> None:
        """The upstream side broke before the response ended, or sent one we refuse
        (``protocol_error``); its port must not be reused."""

    def upstream_writable(self, writable: bool) -> None:
        """Flow control: the upstream stopped (False) or resumed (True) taking the request."""

    def upstream_read_done(self) -> None:
        """One upstream read has been parsed: write out what it produced, in one go."""

    def tunnel_data(self, data: bytes) -> None:
        """After a 101 to an Upgrade request: raw bytes from the upstream."""


@mypyc_attr(allow_interpreted_subclasses=True)
class DownstreamPort:
    """What a stream calls on its client's side (one port per request)."""

    def __init__(self, peer_ip: bytes, peer: Peer = NO_PEER) -> None:
        self.peer_ip: Final = peer_ip  # the client's address, for x-forwarded-for
        self.peer: Final = peer  # its connection, as consistent hashing reads it (one each)
        # Whether any byte of the answer has gone to the client (a failure after that cannot
        # be answered, only reset).
        self.committed = False

    def send_head(
        self,
        status: int,
        reason: bytes,
        headers: Headers,
        length: bytes | None,
        coding: bytes | None,
    ) -> bool:
        """Gather the response head: ``headers`` end to end, ``length`` the upstream's
        Content-Length, ``coding`` its transfer codings but chunked. False: this client cannot
        be sent this body (HTTP/1.0 and a coding), nothing was gathered."""
        raise NotImplementedError

    def send_data(self, data: bytes) -> None:
        raise NotImplementedError

    def send_trailers(self, trailers: Headers) -> None:
        raise NotImplementedError

    def send_end(self) -> None:
        """The response is complete: what was gathered goes out."""
        raise NotImplementedError

    def flush(self) -> None:
        """Write what was gathered since the last flush, in one write."""
        raise NotImplementedError

    def discard(self) -> None:
        """Drop what was gathered and not flushed (a head that must become a 5xx)."""
        raise NotImplementedError

    def send_local(
        self, status: int, body: bytes, location: bytes, headers: tuple[Header, ...] = ()
    ) -> None:
        """A whole answer of the proxy's own (404, 503, 504...; ``headers``: a route's
        redirect or directResponse headers, written as they are)."""
        raise NotImplementedError

    def send_continue(self) -> None:
        """``100 Continue``, answered by the proxy so the client sends its body at once."""
        raise NotImplementedError

    def reset(self) -> None:
        """The answer cannot be completed: HTTP/1 closes the connection, h2 resets the stream."""
        raise NotImplementedError

    def last(self) -> None:
        """No request may follow this one on the connection (HTTP/1; h2: nothing)."""
        raise NotImplementedError

    def finished(self) -> None:
        """The stream is done (answered, logged): the codec may move on to the next."""
        raise NotImplementedError

    def pause(self, reason: str) -> None:
        """Stop reading this request's body for ``reason`` (until ``resume(reason)``)."""
        raise NotImplementedError

    def resume(self, reason: str) -> None:
        raise NotImplementedError

    def hold(self, stream: Stream) -> bool:
        """True while the read being parsed may still turn out malformed: the stream holds its
        upstream writes until ``stream.downstream_read_done()``."""
        raise NotImplementedError

    def start_tunnel(self, upstream: UpstreamPort) -> None:
        """After a 101: bytes flow raw both ways, the client's to ``upstream.send_data``."""
        raise NotImplementedError

    def send_raw(self, data: bytes) -> None:
        """Tunnel bytes to the client, as they are."""
        raise NotImplementedError

    def addresses(self) -> tuple[str, str, str]:
        """(local, remote address, SNI name), as the access log writes them."""
        raise NotImplementedError


@mypyc_attr(allow_interpreted_subclasses=True)
class UpstreamPort:
    """What a stream calls on its upstream's side (one port per attempt)."""

    def __init__(self) -> None:
        self.closed = False
        self.requests = 0  # requests this port's connection has carried (1: a fresh one)

    def send_head(
        self,
        stream: Stream,
        method: bytes,
        path: bytes,
        authority: bytes,
        lines: bytes,
        length: int,
        upgrade: bool,
    ) -> None:
        """Begin a request for ``stream``, which gets the response's events. ``lines``: its
        header lines but the authority and framing, serialized (``name: value\\r\\n``, names
        lower-case); ``length``: its Content-Length, ``NO_LENGTH`` or ``STREAMED``."""
        raise NotImplementedError

    def send_data(self, data: bytes) -> None:
        raise NotImplementedError

    def send_trailers(self, trailers: Headers) -> None:
        raise NotImplementedError

    def send_end(self) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Abandon the request: the rest of its response is never read, the port never reused."""
        raise NotImplementedError

    def cork(self) -> None:
        """Hold writes until ``uncork``."""
        raise NotImplementedError

    def uncork(self) -> None:
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def local_address(self) -> str:
        return ""


@mypyc_attr(allow_interpreted_subclasses=True)
class StreamOpener:
    """Makes the stream for each request head a downstream codec parses."""

    def open(self, port: DownstreamPort, head: RequestHead) -> Stream:
        raise NotImplementedError
