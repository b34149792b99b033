"""The modules compiled with mypyc at install time, read by ``hatch_build.py`` and by the guard
in ``shadowmesh/__init__.py``.

Kept free of imports: the build hook runs it as a plain file, before shadowmesh is installed.
Compiled modules call each other natively, so this list is loaded all compiled or all from
source, never mixed.
"""

# The shared library mypyc puts the compiled code in; each module's own extension is a stub
# that imports it. A dotted name keeps it inside the package.
GROUP = "shadowmesh._native"

# A file in the package of a wheel built with the compiled modules: there the sources' times
# are not compared with the extensions' (installers write files in any order).
WHEEL_MARKER = "_compiled_wheel"

MODULES = (
    "shadowmesh.dataplane.downstream",
    "shadowmesh.dataplane.exchange",
    "shadowmesh.dataplane.request",
    "shadowmesh.dataplane.response",
    "shadowmesh.dataplane.server",
    "shadowmesh.upstream.connection",
    "shadowmesh.upstream.headlimit",
    "shadowmesh.upstream.wire",
    "shadowmesh.routing.table",
    "shadowmesh.routing.match",
    "shadowmesh.routing.balance",
    "shadowmesh.routing.clusters",
    "shadowmesh.routing.hosts",
    "shadowmesh.routing.decision",
    "shadowmesh.routing.policy",
    "shadowmesh.observe.trace",
    "shadowmesh.observe.accesslog",
    "shadowmesh.observe.stats",
    "shadowmesh.mirror.host",
    "shadowmesh.mirror.dispatcher",
)
