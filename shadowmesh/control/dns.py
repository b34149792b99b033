"""Resolving the names ServiceEntries need, in a thread of its own, never on a request's path.

A ServiceEntry with ``resolution: DNS`` (or DNS_ROUND_ROBIN) names its endpoints by
host name. Envoy resolves such a cluster in the background and balances over what it found
(STRICT_DNS); requests use the last answer and never wait for a lookup. This does the same:
the route table is compiled from the last addresses each name resolved to (``snapshot()``);
when an answer changes, ``on_change`` is called so the caller compiles a new table.

Each name is looked up again after its time to live, kept between ``min_refresh`` and
``max_refresh``. ``DnsLookup`` reads ``/etc/hosts`` first (no TTL there: ``default_ttl``, 60 s,
Istio's ``dnsRefreshRate``, stands in), then asks the nameservers of ``/etc/resolv.conf`` with
dnspython, which gives the answer's TTL, and falls back to the system resolver
(``getaddrinfo``, no TTL) when no nameserver answers. A failed lookup keeps the previous
addresses (as Envoy keeps its hosts), is counted, and is retried after ``min_refresh``; it is
logged once when a name starts failing or fails differently, and once when it recovers.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import dns.exception
import dns.resolver

log = logging.getLogger("shadowmesh.dns")

# (addresses, TTL in seconds or None); raises OSError when the name does not resolve.
Lookup = Callable[[str], tuple[tuple[str, ...], float | None]]


class DnsLookup:
    """``/etc/hosts``, then DNS with the answer's TTL, then the system resolver."""

    def __init__(
        self,
        hosts_file: str = "/etc/hosts",
        nameservers: list[str] | None = None,
        port: int = 53,
        lifetime: float = 2.0,
    ) -> None:
        self._hosts_file = hosts_file
        self._resolver: dns.resolver.Resolver | None
        try:
            self._resolver = dns.resolver.Resolver(configure=nameservers is None)
        except dns.exception.DNSException:
            self._resolver = None  # no usable resolv.conf: the system resolver alone
        if self._resolver is not None:
            if nameservers is not None:
                self._resolver.nameservers = nameservers
            self._resolver.port = port
            self._resolver.lifetime = lifetime

    def __call__(self, name: str) -> tuple[tuple[str, ...], float | None]:
        listed = self._from_hosts(name)
        if listed:
            return listed, None
        if self._resolver is not None:
            try:
                return self._from_dns(name)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as exc:
                raise OSError(f"{name}: {exc.__class__.__name__}") from None
            except dns.exception.DNSException:
                pass  # no nameserver answered: the system resolver may know better
        return system_lookup(name)

    def _from_hosts(self, name: str) -> tuple[str, ...]:
        found: dict[str, None] = {}
        try:
            with open(self._hosts_file, encoding="utf-8", errors="replace") as hosts:
                for line in hosts:
                    fields = line.partition("#")[0].split()
                    if len(fields) > 1 and name.lower() in (f.lower() for f in fields[1:]):
                        found[fields[0]] = None
        except OSError:
            return ()
        # IPv4 first, as system_lookup orders them.
        return tuple(sorted(found, key=lambda a: ":" in a))

    def _from_dns(self, name: str) -> tuple[tuple[str, ...], float | None]:
        assert self._resolver is not None
        addresses: list[str] = []
        ttls: list[float] = []
        missing: dns.exception.DNSException | None = None
        for kind in ("A", "AAAA"):
            try:
                answer = self._resolver.resolve(name, kind, search=False)
            except dns.resolver.NoAnswer as exc:
                missing = exc
                continue
            addresses += [str(r.address) for r in answer]
            if answer.rrset is not None:
                ttls.append(float(answer.rrset.ttl))
        if not addresses:
            raise missing or OSError(f"no address for {name}")
        return tuple(dict.fromkeys(addresses)), min(ttls) if ttls else None


def system_lookup(name: str) -> tuple[tuple[str, ...], float | None]:
    """Every address ``name`` resolves to, IPv4 first, in the resolver's order; no TTL."""
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    found: dict[str, None] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for info in infos:
            if info[0] == family:
                found[str(info[4][0])] = None
    if not found:
        raise OSError(f"no address for {name}")
    return tuple(found), None


class Resolver:
    def __init__(
        self,
        on_change: Callable[[], None],
        *,
        lookup: Lookup | None = None,
        min_refresh: float = 5.0,
        max_refresh: float = 300.0,
        default_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_change = on_change
        self._lookup: Lookup = lookup if lookup is not None else DnsLookup()
        self._min = min_refresh
        self._max = max(max_refresh, min_refresh)
        self._default = default_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._addresses: dict[str, tuple[str, ...]] = {}
        self._due: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        self.failures: Counter[str] = Counter()  # failed lookups, by name
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            return dict(self._addresses)

    def want(self, names: Iterable[str]) -> None:
        """The names to keep resolved; new ones are looked up at once, dropped ones forgotten."""
        wanted = set(names)
        with self._lock:
            for name in list(self._due):
                if name not in wanted:
                    del self._due[name]
                    self._addresses.pop(name, None)
                    self._errors.pop(name, None)
            fresh = [n for n in wanted if n not in self._due]
            for name in fresh:
                self._due[name] = 0.0
        if fresh:
            self._wake.set()

    def resolve_due(self) -> bool:
        """Look up every name whose time has come; whether any name's addresses changed."""
        now = self._clock()
        with self._lock:
            due = [n for n, at in self._due.items() if at <= now]
        changed = False
        for name in due:
            changed |= self._resolve(name)
        return changed

    def _resolve(self, name: str) -> bool:
        try:
            addresses, ttl = self._lookup(name)
        except (OSError, UnicodeError) as exc:
            return self._failed(name, str(exc) or exc.__class__.__name__)
        refresh = min(max(self._default if ttl is None else ttl, self._min), self._max)
        with self._lock:
            if name not in self._due:
                return False  # no longer wanted
            self._due[name] = self._clock() + refresh
            before = self._addresses.get(name)
            self._addresses[name] = addresses
            recovered = self._errors.pop(name, None) is not None
        if recovered:
            log.warning("DNS: %s resolves again: %s", name, ", ".join(addresses))
        return before != addresses

    def _failed(self, name: str, error: str) -> bool:
        with self._lock:
            if name not in self._due:
                return False
            self._due[name] = self._clock() + self._min
            self.failures[name] += 1
            previous = self._errors.get(name)
            self._errors[name] = error
        if previous != error:
            log.warning("DNS: lookup of %s failed (%s); keeping its last addresses", name, error)
        return False

    def next_due(self) -> float | None:
        with self._lock:
            return min(self._due.values(), default=None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadowmesh-dns", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.resolve_due():
                try:
                    self._on_change()
                except Exception:
                    log.exception("DNS: applying new addresses failed")
            due = self.next_due()
            wait = self._max if due is None else max(0.0, due - self._clock())
            self._wake.wait(timeout=min(wait, self._max))
            self._wake.clear()

    def stats(self) -> Mapping[str, object]:
        with self._lock:
            return {
                "names": len(self._due),
                "failing": sorted(self._errors),
                "failures": dict(self.failures),
            }
