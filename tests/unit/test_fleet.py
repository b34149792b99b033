"""observe.fleet: a worker's counters as one frame, and the first process's sum of them."""

from __future__ import annotations

from shadowmesh.observe.fleet import Fleet, Report, decode, encode
from shadowmesh.observe.stats import Stats
from shadowmesh.routing.decision import Endpoint

CLUSTER = "outbound|8000|v1|httpbin.default.svc.cluster.local"


def worker_stats(requests: int) -> Stats:
    stats = Stats()
    for _ in range(requests):
        stats.count_request(CLUSTER, 200, "", Endpoint("127.0.0.1", 9000), "", 3, 10, 200)
        stats.observe(CLUSTER, 0.002)
    stats.count_request("", 404, "NR", None, "nowhere", 0, 0, 0)
    stats.shadows["sent"] += requests
    stats.requests["rejected"] += 1
    stats.downstream_active = 2
    return stats


def test_a_frame_gives_back_every_count() -> None:
    stats = worker_stats(3)
    sent = Report(42, stats, {"shadow_in_flight": 1}, {"exported": 3}, 7, {"no_cluster": 2})
    report = decode(encode(sent))
    assert (report.pid, report.gauges, report.otlp, report.answered, report.skipped) == (
        42, {"shadow_in_flight": 1}, {"exported": 3}, 7, {"no_cluster": 2},
    )  # fmt: skip
    assert report.stats.snapshot() == stats.snapshot()
    assert set(report.stats.cells) == set(stats.cells)  # endpoints equal, Host fallbacks kept
    for key, cell in stats.cells.items():
        back = report.stats.cells[key]
        assert (back.count, back.duration, back.duration_sum) == (
            cell.count, cell.duration, cell.duration_sum,
        )  # fmt: skip
        assert (back.request_bytes, back.response_bytes_sum) == (
            cell.request_bytes, cell.response_bytes_sum,
        )  # fmt: skip


def test_each_worker_counts_once_alive_or_gone() -> None:
    fleet = Fleet()
    own = Report(1, worker_stats(5), {"shadow_in_flight": 1}, None, skipped={"no_cluster": 1})
    fleet.update(1, Report(2, worker_stats(1), {"shadow_in_flight": 2}))
    fleet.update(1, Report(2, worker_stats(2), {"shadow_in_flight": 2}))  # replaces, not adds
    fleet.update(2, Report(3, worker_stats(4), {"shadow_in_flight": 4}, skipped={"no_cluster": 2}))
    totals = fleet.total(own)
    total, gauges = totals.stats, totals.gauges
    assert totals.skipped == {"no_cluster": 3} and totals.otlp is None
    assert total.request_totals()["total"] == (5 + 1) + (2 + 1) + (4 + 1)
    assert total.shadows["sent"] == 11 and total.requests["rejected"] == 3
    assert total.latency[CLUSTER].count == 11
    assert gauges == {"shadow_in_flight": 7} and total.downstream_active == 6
    assert [p["requests"] for p in fleet.processes(own)] == [6, 3, 5]
    fleet.retire(2)
    fleet.retire(2)  # a second end of the same worker adds nothing
    totals = fleet.total(own)
    total, gauges = totals.stats, totals.gauges
    assert totals.skipped == {"no_cluster": 1}
    assert total.request_totals()["total"] == 6 + 3 + 5
    assert gauges == {"shadow_in_flight": 3}  # a gone worker's gauges go with it
    assert total.downstream_active == 4
    assert own.stats.request_totals()["total"] == 6  # the first process's own are not touched
