"""Counters the data plane keeps: requests by response flag, shadows by outcome and drop reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)  # "total", "2xx", flag names
    shadows: Counter[str] = field(default_factory=Counter)  # sent, completed, failed, ...
    shadow_dropped: Counter[str] = field(default_factory=Counter)  # by reason
    shadow_failed: Counter[str] = field(default_factory=Counter)  # by reason
    downstream_active: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "shadows": dict(self.shadows),
            "shadow_dropped": dict(self.shadow_dropped),
            "shadow_failed": dict(self.shadow_failed),
            "downstream_active": self.downstream_active,
        }
