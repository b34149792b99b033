"""Outlier detection for one cluster, as Envoy's consecutive-error detector, with injected time.

Istio's ``outlierDetection`` becomes Envoy's ``outlier_detection`` (istio/istio
``pilot/pkg/networking/core/cluster_traffic_policy.go`` applyOutlierDetection); the runtime is
Envoy's ``source/extensions/outlier_detection_monitors`` / ``upstream/outlier_detection_impl.cc``
and ``docs/root/intro/arch_overview/upstream/outlier.rst``:

- Every attempt's outcome is reported once (``report``): an HTTP status, or a local-origin
  failure (CONNECT_FAILURE: refused, reset, TLS handshake; TIMEOUT: connect, per-try or route
  timeout). Without ``splitExternalLocalOriginErrors`` a connect failure counts as a 503 and a
  timeout as a 504 (Envoy's ``resultToHttpCode``); with it they feed only the local-origin
  counter, which any response resets.
- A 5xx adds one to the consecutive-5xx counter, a 502/503/504 to the gateway counter too;
  any other status resets both. Detection happens inline, on exactly the Nth (``==``).
- An ejection is skipped, counted in ``ejections_overflow``, if the share of ejected endpoints
  would exceed ``maxEjectionPercent`` (Envoy's default 10% when Istio leaves it 0).
- Every ``interval`` a timer tick unejects the endpoints whose time is up: ejection time is
  ``baseEjectionTime x ejections-in-a-row``, capped at max_ejection_time (300s, or the base if
  larger); the multiplier decays by one per tick that finds the endpoint healthy an interval
  after its unejection. An unejected endpoint's counters start from zero.
- The balancer skips ejected endpoints unless the cluster is in panic: fewer healthy than
  ``minHealthPercent`` (Istio's default 0 with outlierDetection: never in panic, so with every
  endpoint ejected requests get 503 UH).

The timer is lazy: ``advance()`` runs the ticks that fell due since the last call, reading the
injected ``clock`` (``time.monotonic`` by default), so tests step time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

NO_OUTCOME: Final = 0  # nothing to report (the client went away, a circuit-breaker overflow)
CONNECT_FAILURE: Final = -1  # Envoy's LocalOriginConnectFailed (connect error, reset, TLS)
TIMEOUT: Final = -2  # Envoy's LocalOriginTimeout (connect, per-try or route timeout)

# Response flags of an attempt that failed at the connection (Envoy's router reports them as
# LocalOriginConnectFailed: connect failure, connection termination or reset, protocol error).
_CONNECT_FAILED_FLAGS: Final = frozenset({"UF", "UC", "UR", "UPE", "LR"})
_TIMEOUT_FLAGS: Final = frozenset({"UT"})


def outcome_of(upstream_status: int, flag: str) -> int:
    """What one attempt reports to outlier detection: the status the upstream answered (> 0
    when its head arrived), else its failure by the attempt's response flag; NO_OUTCOME for
    anything that is not the upstream's doing (overflow UO, the client leaving DC, a fault)."""
    if upstream_status > 0:
        return upstream_status
    if flag in _CONNECT_FAILED_FLAGS:
        return CONNECT_FAILURE
    if flag in _TIMEOUT_FLAGS:
        return TIMEOUT
    return NO_OUTCOME


# Envoy's defaults (data-plane-api envoy/config/cluster/v3/outlier_detection.proto).
DEFAULT_CONSECUTIVE = 5
DEFAULT_INTERVAL = 10.0
DEFAULT_BASE_EJECTION = 30.0
DEFAULT_MAX_EJECTION_TIME = 300.0
DEFAULT_MAX_EJECTION_PERCENT = 10.0

# The kinds of ejection, as Envoy's stats name them.
KINDS: Final = (
    "consecutive_5xx",
    "consecutive_gateway_failure",
    "consecutive_local_origin_failure",
)
_5XX, _GATEWAY, _LOCAL = 0, 1, 2
# A tick loop never runs more than this many ticks at once: past them every multiplier has
# decayed and every ejection ended, whatever the config (bounded, for a very short interval).
_MAX_TICKS = 10_000


class OutlierConfig:
    """One cluster's compiled ``outlierDetection``: thresholds (0: that kind never ejects)."""

    __slots__ = (
        "consecutive_5xx",
        "consecutive_gateway",
        "consecutive_local",
        "enforce",
        "split",
        "interval",
        "base_ejection",
        "max_ejection",
        "max_ejection_percent",
        "min_health_percent",
    )

    def __init__(
        self,
        *,
        consecutive_5xx: int | None = None,
        consecutive_gateway: int | None = None,
        consecutive_local: int | None = None,
        split: bool = False,
        interval: float | None = None,
        base_ejection: float | None = None,
        max_ejection_percent: int | None = None,
        min_health_percent: int | None = None,
    ) -> None:
        # Istio: an unset consecutive5xxErrors leaves Envoy's 5 (enforced); 0 disables it.
        # An unset consecutiveGatewayErrors leaves Envoy's 5 with enforcing 0: detected, never
        # ejected. Local-origin failures count only in split mode (default 5, enforced).
        gateway = DEFAULT_CONSECUTIVE if consecutive_gateway is None else consecutive_gateway
        local = DEFAULT_CONSECUTIVE if not consecutive_local else consecutive_local
        self.consecutive_5xx: Final = (
            DEFAULT_CONSECUTIVE if consecutive_5xx is None else consecutive_5xx
        )
        self.consecutive_gateway: Final = gateway
        self.consecutive_local: Final = local if split else 0
        # Per kind: does a detection eject (Envoy's enforcing_* at 100) or only count?
        self.enforce: Final = (
            self.consecutive_5xx > 0,
            consecutive_gateway is not None and consecutive_gateway > 0,
            split,
        )
        self.split: Final = split
        self.interval: Final = DEFAULT_INTERVAL if interval is None else interval
        base = DEFAULT_BASE_EJECTION if base_ejection is None else base_ejection
        self.base_ejection: Final = base
        self.max_ejection: Final = max(DEFAULT_MAX_EJECTION_TIME, base)
        self.max_ejection_percent: Final = (
            float(max_ejection_percent) if max_ejection_percent else DEFAULT_MAX_EJECTION_PERCENT
        )
        self.min_health_percent: Final = float(min_health_percent or 0)

    def describe(self) -> dict[str, Any]:
        return {
            "consecutive5xx": self.consecutive_5xx,
            "consecutiveGatewayFailure": self.consecutive_gateway,
            "consecutiveLocalOriginFailure": self.consecutive_local,
            "enforcing": {
                kind: 100 if e else 0 for kind, e in zip(KINDS, self.enforce, strict=True)
            },
            "splitExternalLocalOriginErrors": self.split,
            "interval": self.interval,
            "baseEjectionTime": self.base_ejection,
            "maxEjectionTime": self.max_ejection,
            "maxEjectionPercent": self.max_ejection_percent,
            "healthyPanicThreshold": self.min_health_percent,
        }


class OutlierDetector:
    """The per-endpoint counters and ejections of one cluster (indices are the balancer's)."""

    __slots__ = (
        "config",
        "_clock",
        "_size",
        "_counts",
        "_ejected",
        "_ejected_at",
        "_unejected_at",
        "_backoff",
        "_active",
        "_next_tick",
        "_on_change",
        "_usable",
        "detected",
        "enforced",
        "overflow",
        "enforced_total",
    )

    def __init__(
        self, config: OutlierConfig, size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config: Final = config
        self._clock: Final = clock
        self._size: Final = size
        self._counts = [[0, 0, 0] for _ in range(size)]  # per endpoint: 5xx, gateway, local
        self._ejected = [False] * size
        self._ejected_at = [0.0] * size
        self._unejected_at: list[float | None] = [None] * size
        self._backoff = [0] * size  # Envoy's eject time backoff: ejections in a row
        self._active = 0
        self._next_tick = clock() + config.interval
        self._on_change: Callable[[], None] | None = None
        self._usable: tuple[int, ...] = tuple(range(size))
        # Envoy's cluster.<name>.outlier_detection.* counters.
        self.detected = [0, 0, 0]  # ejections_detected_<kind>
        self.enforced = [0, 0, 0]  # ejections_enforced_<kind>
        self.overflow = 0  # ejections_overflow
        self.enforced_total = 0  # ejections_enforced_total

    def attach(self, on_change: Callable[[], None]) -> None:
        """``on_change`` is called whenever the usable set changes (the balancer's refresh)."""
        self._on_change = on_change

    @property
    def ejections_active(self) -> int:
        return self._active

    def is_ejected(self, index: int) -> bool:
        return self._ejected[index]

    def usable(self) -> tuple[int, ...]:
        """The endpoints to balance over: the healthy ones, or all of them in panic."""
        return self._usable

    def in_panic(self) -> bool:
        size = self._size
        healthy = 100.0 * (size - self._active) / size if size else 0.0
        return healthy < self.config.min_health_percent

    def report(self, index: int, outcome: int) -> None:
        """One attempt to endpoint ``index`` ended: a status (> 0) or a local-origin failure."""
        if outcome == NO_OUTCOME or not 0 <= index < self._size:
            return
        self.advance()
        counts = self._counts[index]
        config = self.config
        if outcome < 0:
            if config.split:
                counts[_LOCAL] += 1
                if counts[_LOCAL] == config.consecutive_local:
                    self._detected(index, _LOCAL)
                return
            outcome = 503 if outcome == CONNECT_FAILURE else 504
        elif config.split:
            counts[_LOCAL] = 0  # the connection worked: Envoy's LocalOriginConnectSuccess
        if outcome < 500 or outcome > 599:
            counts[_5XX] = 0
            counts[_GATEWAY] = 0
            return
        if 502 <= outcome <= 504:
            counts[_GATEWAY] += 1
            if counts[_GATEWAY] == config.consecutive_gateway:
                self._detected(index, _GATEWAY)
        else:
            counts[_GATEWAY] = 0
        counts[_5XX] += 1
        if counts[_5XX] == config.consecutive_5xx:
            self._detected(index, _5XX)

    def _detected(self, index: int, kind: int) -> None:
        if self._ejected[index]:
            return
        self.detected[kind] += 1
        config = self.config
        share = 100.0 * (self._active + 1) / self._size
        if share > config.max_ejection_percent:
            self.overflow += 1
            return
        if not config.enforce[kind]:
            return
        self.enforced[kind] += 1
        self.enforced_total += 1
        self._ejected[index] = True
        self._ejected_at[index] = self._clock()
        # The multiplier grows per ejection, but not past the max ejection time.
        if config.base_ejection * (self._backoff[index] + 1) <= config.max_ejection:
            self._backoff[index] += 1
        elif self._backoff[index] == 0:
            self._backoff[index] = 1
        self._active += 1
        self._changed()

    def advance(self) -> None:
        """Run the interval ticks that fell due since the last call."""
        now = self._clock()
        if now < self._next_tick:
            return
        interval = self.config.interval
        ticks = 0
        changed = False
        while self._next_tick <= now and ticks < _MAX_TICKS:
            changed = self._tick(self._next_tick) or changed
            self._next_tick += interval
            ticks += 1
        if self._next_tick <= now:  # the rest of a very long idle spell: nothing left to do
            self._next_tick = now + interval
        if changed:
            self._changed()

    def _tick(self, now: float) -> bool:
        config = self.config
        changed = False
        for i in range(self._size):
            if not self._ejected[i]:
                since = self._unejected_at[i]
                if since is not None and now - since >= config.interval and self._backoff[i]:
                    self._backoff[i] -= 1
                continue
            duration = min(config.base_ejection * self._backoff[i], config.max_ejection)
            if now - self._ejected_at[i] >= duration:
                self._ejected[i] = False
                self._unejected_at[i] = now
                self._counts[i] = [0, 0, 0]
                self._active -= 1
                changed = True
        return changed

    def _changed(self) -> None:
        if self.in_panic():
            self._usable = tuple(range(self._size))
        else:
            self._usable = tuple(i for i in range(self._size) if not self._ejected[i])
        if self._on_change is not None:
            self._on_change()

    def stats(self) -> dict[str, int]:
        """Envoy's ``outlier_detection.*`` counters of this cluster."""
        out = {
            "ejections_active": self._active,
            "ejections_enforced_total": self.enforced_total,
            "ejections_overflow": self.overflow,
        }
        for k, kind in enumerate(KINDS):
            out[f"ejections_enforced_{kind}"] = self.enforced[k]
            out[f"ejections_detected_{kind}"] = self.detected[k]
        return out
