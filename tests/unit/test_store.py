"""The control plane: the SQLite store's semantics and the Controller's all-or-nothing apply."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shadowmesh.control.controller import Controller, DataPlaneError, NotFound
from shadowmesh.control.kinds import UnknownKind, resolve_kind
from shadowmesh.control.store import DB_NAME, Store, StoreError
from shadowmesh.errors import ConfigErrors
from shadowmesh.model.resources import Document, Meta, VirtualService
from shadowmesh.routing.table import RouteTable
from tests.support.seed import ROUTE_V1, SERVICE, WORKLOADS


def vs_doc(name: str, hosts: list[str], namespace: str = "default", **extra: Any) -> Document:
    """A hand-built document, as the model's loader would return it."""
    raw: dict[str, Any] = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {"hosts": hosts, "http": [{"route": [{"destination": {"host": hosts[0]}}]}]},
        **extra,
    }
    resource = VirtualService(Meta(name, namespace), tuple(hosts), (), raw=raw)
    return Document(resource, "test.yaml", 0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state")
    yield s
    s.close()


# -- the store ---------------------------------------------------------------------------------


def test_apply_reports_created_then_unchanged_then_configured(store: Store) -> None:
    key = ("VirtualService", "default", "httpbin")
    assert store.apply([vs_doc("httpbin", ["httpbin"])]) == [(key, "created")]
    assert store.apply([vs_doc("httpbin", ["httpbin"])]) == [(key, "unchanged")]
    assert store.apply([vs_doc("httpbin", ["httpbin", "other"])]) == [(key, "configured")]


def test_generation_and_revision_grow_only_on_change(store: Store) -> None:
    assert store.revision == 0
    store.apply([vs_doc("a", ["a"]), vs_doc("b", ["b"])])
    assert store.revision == 1
    store.apply([vs_doc("a", ["a"])])
    assert store.revision == 1
    [row] = store.get("VirtualService", "default", "a")
    assert row.generation == 1
    store.apply([vs_doc("a", ["a", "c"]), vs_doc("b", ["b"])])
    assert store.revision == 2
    [row] = store.get("VirtualService", "default", "a")
    assert (row.generation, row.revision) == (2, 2)
    [row_b] = store.get("VirtualService", "default", "b")
    assert (row_b.generation, row_b.revision) == (1, 1)


def test_stored_document_carries_its_namespace(store: Store) -> None:
    store.apply([vs_doc("httpbin", ["httpbin"], namespace="istio")])
    [row] = store.get("VirtualService", None, "httpbin")
    assert row.key == ("VirtualService", "istio", "httpbin")
    assert row.document["metadata"] == {"name": "httpbin", "namespace": "istio"}
    assert row.document["spec"]["hosts"] == ["httpbin"]


def test_same_name_in_two_namespaces_is_two_resources(store: Store) -> None:
    store.apply([vs_doc("httpbin", ["httpbin"], "a"), vs_doc("httpbin", ["httpbin"], "b")])
    assert [r.key[1] for r in store.get("VirtualService")] == ["a", "b"]
    assert [r.key[1] for r in store.get("VirtualService", "b")] == ["b"]
    assert store.get("DestinationRule") == []


def test_delete_removes_found_and_reports_missing(store: Store) -> None:
    store.apply([vs_doc("a", ["a"]), vs_doc("b", ["b"])])
    a, missing = ("VirtualService", "default", "a"), ("VirtualService", "default", "zz")
    assert store.delete([a, missing]) == [(a, True), (missing, False)]
    assert [r.key[2] for r in store.get("VirtualService")] == ["b"]
    assert store.revision == 2


def test_delete_of_nothing_found_changes_no_revision(store: Store) -> None:
    store.apply([vs_doc("a", ["a"])])
    assert store.delete([("VirtualService", "default", "zz")]) == [
        (("VirtualService", "default", "zz"), False)
    ]
    assert store.revision == 1


def test_state_survives_reopening(tmp_path: Path) -> None:
    first = Store(tmp_path)
    first.apply([vs_doc("a", ["a"])])
    first.apply([vs_doc("a", ["a", "b"])])
    first.close()
    again = Store(tmp_path)
    [row] = again.get("VirtualService", "default", "a")
    assert (row.generation, again.revision) == (2, 2)
    assert row.document["spec"]["hosts"] == ["a", "b"]
    assert again.apply([vs_doc("a", ["a", "b"])])[0][1] == "unchanged"
    again.close()


def test_state_dir_is_created_private_with_a_wal_database(tmp_path: Path) -> None:
    state = tmp_path / "deep" / "state"
    Store(state).close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    with sqlite3.connect(state / DB_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failing_transaction_leaves_the_prior_state(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.apply([vs_doc("a", ["a"])])
    # A real database failure on the second row, after the first was already written.
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON resources WHEN NEW.name = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    with pytest.raises(StoreError, match="boom"):  # SQLite's error, with the file named
        store.apply([vs_doc("a", ["a", "changed"]), vs_doc("boom", ["x"])])
    store.close()
    reopened = Store(tmp_path)
    [row] = reopened.get("VirtualService")
    assert (row.key[2], row.generation, reopened.revision) == ("a", 1, 1)
    assert row.document["spec"]["hosts"] == ["a"]
    reopened.close()


def test_a_crash_in_the_middle_of_an_apply_leaves_the_last_commit(tmp_path: Path) -> None:
    with Store(tmp_path) as first:
        first.apply([vs_doc("a", ["a"])])
    # The process dies (os._exit, no cleanup) inside the transaction, after row "a" changed.
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import vs_doc
        from shadowmesh.control.store import Store
        store = Store({str(tmp_path)!r})
        store._db.create_function("crash", 0, lambda: os._exit(3))
        store._db.execute(
            "CREATE TRIGGER die BEFORE INSERT ON resources WHEN NEW.name = 'die' "
            "BEGIN SELECT crash(); END"
        )
        store.apply([vs_doc("a", ["a", "changed"]), vs_doc("die", ["x"])])
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 3, result.stderr.decode()
    store = Store(tmp_path)
    [row] = store.get("VirtualService")
    assert (row.key[2], row.generation, store.revision) == ("a", 1, 1)
    store.close()


def test_all_reparses_what_was_stored(store: Store) -> None:
    store.apply([vs_doc("httpbin", ["httpbin"], namespace="istio")])
    loaded = store.all()
    assert loaded.errors == []
    [vs] = loaded.resources
    assert isinstance(vs, VirtualService)
    assert (vs.meta, vs.hosts) == (Meta("httpbin", "istio"), ("httpbin",))


def test_kinds_resolve_as_kubectl_names_them() -> None:
    for name in ("vs", "VirtualService", "virtualservices", "virtualservice.networking.istio.io"):
        assert resolve_kind(name).kind == "VirtualService"
    assert resolve_kind("svc").resource == "service"
    assert resolve_kind("we").resources == "workloadentries.networking.istio.io"
    assert resolve_kind("DR").kind == "DestinationRule"
    with pytest.raises(UnknownKind, match='resource type "foo"'):
        resolve_kind("foo")


# -- the controller ----------------------------------------------------------------------------

MIRROR = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {host: httpbin, subset: v1}
      weight: 100
    mirror: {host: httpbin, subset: v2}
    mirror_percent: 100
"""
BAD_FIELD = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: typo}
spec:
  host: httpbin
  subsetz: []
"""


class Recorder:
    """The data plane's side of the contract: remembers every table it was handed."""

    def __init__(self) -> None:
        self.tables: list[RouteTable] = []

    def __call__(self, table: RouteTable) -> None:
        self.tables.append(table)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def controller(store: Store, recorder: Recorder) -> Controller:
    c = Controller(store, recorder)
    c.start()
    return c


def test_start_hands_the_data_plane_a_table(controller: Controller, recorder: Recorder) -> None:
    assert len(recorder.tables) == 1
    assert controller.table is recorder.tables[0]
    assert recorder.tables[0].ports == frozenset()


def test_apply_answers_in_kubectl_words(controller: Controller, recorder: Recorder) -> None:
    outcome = controller.apply_files(
        [("00.yaml", WORKLOADS), ("01.yaml", SERVICE), ("02.yaml", ROUTE_V1)], "default"
    )
    assert outcome.lines == [
        "workloadentry.networking.istio.io/httpbin-v1 created",
        "workloadentry.networking.istio.io/httpbin-v2 created",
        "service/httpbin created",
        "virtualservice.networking.istio.io/httpbin created",
        "destinationrule.networking.istio.io/httpbin created",
    ]
    assert len(recorder.tables) == 2
    assert recorder.tables[-1].ports == frozenset({8000})
    again = controller.apply_files([("02.yaml", ROUTE_V1)], "default")
    assert again.lines == [
        "virtualservice.networking.istio.io/httpbin unchanged",
        "destinationrule.networking.istio.io/httpbin unchanged",
    ]
    assert len(recorder.tables) == 2  # nothing changed: no swap


def test_deprecated_mirror_percent_warns_and_configures(controller: Controller) -> None:
    controller.apply_files([("a.yaml", WORKLOADS + "---\n" + SERVICE + "---\n" + ROUTE_V1)])
    outcome = controller.apply_files([("03.yaml", MIRROR)])
    assert outcome.lines == ["virtualservice.networking.istio.io/httpbin configured"]
    assert (
        'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead'
        in outcome.warnings
    )
    assert not any(w.startswith("Warning:") for w in outcome.warnings)


def test_one_invalid_document_applies_nothing(
    controller: Controller, recorder: Recorder, store: Store
) -> None:
    with pytest.raises(ConfigErrors) as caught:
        controller.apply_files([("ok.yaml", SERVICE), ("bad.yaml", ROUTE_V1 + "---\n" + BAD_FIELD)])
    assert len(caught.value.errors) == 1
    assert "bad.yaml" in str(caught.value.errors[0])
    assert "document 3" in str(caught.value.errors[0])
    assert store.rows() == [] and store.revision == 0
    assert len(recorder.tables) == 1  # only start()'s


def test_errors_of_every_file_are_reported_together(controller: Controller) -> None:
    with pytest.raises(ConfigErrors) as caught:
        controller.apply_files(
            [("one.yaml", BAD_FIELD), ("two.yaml", SERVICE + "---\n" + BAD_FIELD)]
        )
    sources = [e.source for e in caught.value.errors]
    assert sources == ["one.yaml", "two.yaml"]


def test_the_same_resource_twice_in_one_apply_is_refused(
    controller: Controller, store: Store
) -> None:
    with pytest.raises(ConfigErrors, match="is also defined in a.yaml document 1"):
        controller.apply_files([("a.yaml", SERVICE), ("b.yaml", SERVICE)])
    assert store.rows() == []


def test_applied_namespace_comes_from_n_unless_the_document_says(controller: Controller) -> None:
    ns_doc = SERVICE.replace("{name: httpbin}", "{name: pinned, namespace: other}")
    controller.apply_files([("a.yaml", SERVICE), ("b.yaml", ns_doc)], "team")
    assert [i["metadata"]["namespace"] for i in controller.get("svc", None, None).items] == [
        "other",
        "team",
    ]


def test_get_shows_server_metadata_and_misses_by_name(controller: Controller) -> None:
    controller.apply_files([("a.yaml", SERVICE)])
    [item] = controller.get("services", "httpbin", "default").items
    assert item["metadata"]["generation"] == 1
    assert item["metadata"]["resourceVersion"] == "1"
    assert item["metadata"]["creationTimestamp"].endswith("Z")
    with pytest.raises(NotFound, match='services "nope" not found'):
        controller.get("svc", "nope", "default")
    assert controller.get("vs", None, "default").items == []


def test_delete_by_name_and_by_file(controller: Controller, recorder: Recorder) -> None:
    controller.apply_files([("a.yaml", WORKLOADS + "---\n" + SERVICE + "---\n" + ROUTE_V1)])
    tables = len(recorder.tables)
    outcome = controller.delete("vs", ["httpbin", "ghost"], "default")
    assert outcome.lines == ['virtualservice.networking.istio.io "httpbin" deleted']
    assert outcome.errors == [
        'Error from server (NotFound): virtualservices.networking.istio.io "ghost" not found'
    ]
    assert len(recorder.tables) == tables + 1
    by_file = controller.delete_files([("02.yaml", ROUTE_V1)], "default")
    assert by_file.lines == ['destinationrule.networking.istio.io "httpbin" deleted']
    assert by_file.errors == [
        'Error from server (NotFound): error when deleting "02.yaml": '
        'virtualservices.networking.istio.io "httpbin" not found'
    ]
    with pytest.raises(UnknownKind):
        controller.delete("pods", ["x"], "default")


def test_config_survives_a_restart(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        first = Controller(store, Recorder())
        first.start()
        first.apply_files([("a.yaml", WORKLOADS + "---\n" + SERVICE)])
    recorder = Recorder()
    with Store(tmp_path) as store:
        second = Controller(store, recorder)
        assert second.start() == []
        assert recorder.tables[0].ports == frozenset({8000})
        assert second.apply_files([("a.yaml", SERVICE)]).lines == ["service/httpbin unchanged"]


def test_a_follower_rereads_only_what_changed(tmp_path: Path, monkeypatch: Any) -> None:
    """A worker's controller, started again after another process committed, reads the rows
    whose revision changed (and drops the deleted), and recompiles only what they change."""
    many = "---\n".join(
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs-{i}}}\n"
        f"spec:\n  hosts: [vs-{i}]\n  http:\n  - route:\n    - destination: {{host: httpbin}}\n"
        for i in range(20)
    )
    with Store(tmp_path) as writer_store, Store(tmp_path) as follower_store:
        writer = Controller(writer_store, Recorder())
        writer.apply_files([("svc.yaml", WORKLOADS + "---\n" + SERVICE), ("vs.yaml", many)])
        recorder = Recorder()
        follower = Controller(follower_store, recorder)
        follower.start()
        read: list[list[Any]] = []
        load = follower_store.load
        monkeypatch.setattr(follower_store, "load", lambda keys: read.append(keys) or load(keys))
        writer.apply_files([("one.yaml", many.split("---\n")[3].replace("[vs-3]", "[vs-3, x]"))])
        writer.delete("vs", ["vs-5"])
        follower.start()
        assert read == [[("VirtualService", "default", "vs-3")]]
        assert follower._compiler.reused == 18  # noqa: SLF001 (vs-3 compiled, vs-5 gone)
        full = RouteTable.compile(follower_store.all().resources)
        assert recorder.tables[-1].describe() == full.describe()


def test_cross_references_warn_as_istioctl_analyze(controller: Controller) -> None:
    outcome = controller.apply_files([("vs.yaml", ROUTE_V1.split("---")[0])])
    assert outcome.lines == ["virtualservice.networking.istio.io/httpbin created"]
    assert outcome.warnings == [
        '(VirtualService default/httpbin) Referenced host not found: "httpbin"',
        "(VirtualService default/httpbin) Referenced host+subset in destinationrule not found: "
        '"httpbin+v1"',
    ]
    # Warnings are about what was applied, not about everything stored.
    assert controller.apply_files([("svc.yaml", SERVICE)]).warnings == []


def test_a_table_the_data_plane_refuses_is_not_stored(store: Store) -> None:
    offered: list[RouteTable] = []

    def refuse_port_8000(table: RouteTable) -> None:
        offered.append(table)
        if 8000 in table.ports:
            raise OSError(98, "Address already in use")

    controller = Controller(store, refuse_port_8000)
    controller.start()
    started = controller.table
    with pytest.raises(DataPlaneError, match="refused the new configuration: .* already in use"):
        controller.apply_files([("all.yaml", WORKLOADS + "---\n" + SERVICE)])
    assert store.rows() == [] and store.revision == 0
    # The data plane was handed the previous table back, undoing what it took of the new one.
    assert controller.table is started and offered[-1] is started and len(offered) == 3
    other_port = SERVICE.replace("port: 8000", "port: 8001")
    assert controller.apply_files([("svc.yaml", other_port)]).lines == ["service/httpbin created"]
    assert offered[-1].ports == frozenset({8001})


def test_a_stored_row_that_no_longer_parses_is_skipped_at_start(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        Controller(store, Recorder()).apply_files([("svc.yaml", SERVICE)])
    # As if an older, more lenient shadowmesh had stored it.
    bad = '{"apiVersion":"v1","kind":"Service","metadata":{"name":"old"},"spec":{"portz":[]}}'
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute(
            "INSERT INTO resources VALUES ('Service', 'default', 'old', 'v1', ?, 1, 1, "
            "'2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            (bad,),
        )
    recorder = Recorder()
    with Store(tmp_path) as store:
        controller = Controller(store, recorder)
        [warning] = controller.start()
        assert warning.startswith("ignoring stored resource: stored Service default/old")
        assert recorder.tables[0].ports == frozenset({8000})
        assert controller.delete("svc", ["old"]).lines == ['service "old" deleted']


def test_an_apply_before_start_builds_on_what_is_stored(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        Controller(store, Recorder()).apply_files([("svc.yaml", SERVICE)])
    recorder = Recorder()
    with Store(tmp_path) as store:
        Controller(store, recorder).apply_files([("we.yaml", WORKLOADS)])
    assert recorder.tables[-1].ports == frozenset({8000})
