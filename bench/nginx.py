"""nginx twice over: the fast upstreams, and the peer proxy shadowmesh is measured against.

Each runs from its own prefix and config in a temp dir (``nginx -p DIR -c DIR/nginx.conf -g
'daemon off;'``), so the bench never touches the system's nginx, its pid file or its logs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Procs, wait_for_port

BODY = '{"ok":true}'


@dataclass(frozen=True)
class PeerConfig:
    """What the peer proxy does: where it listens, where it sends, whether it mirrors."""

    listen: int
    v1: int
    v2: int
    mirror_percent: float  # 0: no mirror
    access_log: bool
    workers: int
    shadow_timeout: float


def _preamble(prefix: Path, workers: int) -> str:
    # Compiled-in temp paths point at /var/lib/nginx: keep every file of this nginx in its prefix.
    temps = "\n".join(
        f"    {kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
worker_processes {workers};
worker_rlimit_nofile 16384;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 8192; }}
http {{
{temps}
    default_type application/octet-stream;
    keepalive_requests 1000000;
    client_max_body_size 16m;
"""


def upstream_config(prefix: Path, ports: Sequence[int]) -> str:
    """Tiny upstreams: ``return 200`` with a small JSON body, no access log, one worker."""
    servers = "\n".join(
        f"""    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ default_type application/json; return 200 '{BODY}'; }}
    }}"""
        for port in ports
    )
    return f"{_preamble(prefix, 1)}    access_log off;\n{servers}\n}}\n"


def _sampling(percent: float) -> str:
    # nginx's mirror has no percentage: the usual recipe samples with split_clients.
    if 0 < percent < 100:
        return f'    split_clients "${{request_id}}" $bench_mirror {{ {percent:g}% 1; * ""; }}\n'
    return ""


def _mirror_location(cfg: PeerConfig) -> str:
    if not cfg.mirror_percent:
        return ""
    skip = (
        '            if ($bench_mirror = "") { return 204; }\n' if cfg.mirror_percent < 100 else ""
    )
    t = f"{cfg.shadow_timeout:g}s"
    return f"""        location = /__bench_mirror {{
            internal;
{skip}            proxy_pass http://v2$request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host-shadow;
            proxy_connect_timeout {t};
            proxy_send_timeout {t};
            proxy_read_timeout {t};
        }}
"""


def peer_config(prefix: Path, cfg: PeerConfig) -> str:
    """The peer: proxy_pass to a keep-alive upstream block, and nginx's own mirror module."""
    log = f"access_log {prefix}/access.log;" if cfg.access_log else "access_log off;"
    mirror = (
        "mirror /__bench_mirror;\n            mirror_request_body on;" if cfg.mirror_percent else ""
    )
    return f"""{_preamble(prefix, cfg.workers)}    {log}
    # Bodies up to 2 MiB stay in memory, as shadowmesh keeps them, instead of a temp file.
    client_body_buffer_size 2m;
    upstream v1 {{ server 127.0.0.1:{cfg.v1}; keepalive 64; }}
    upstream v2 {{ server 127.0.0.1:{cfg.v2}; keepalive 64; }}
{_sampling(cfg.mirror_percent)}    server {{
        listen 127.0.0.1:{cfg.listen} backlog=4096;
        location / {{
            {mirror}
            proxy_pass http://v1;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
{_mirror_location(cfg)}    }}
}}
"""


def start(
    procs: Procs, name: str, prefix: Path, config: str, cpus: Sequence[int], port: int
) -> subprocess.Popen[bytes]:
    """Write the config, check it with ``nginx -t``, start nginx and wait for ``port``."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(config)
    argv = ["nginx", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
    check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t rejected {conf}: {check.stderr.strip()}")
    proc = procs.start(name, argv, cpus)
    wait_for_port(port, proc)
    return proc


def version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    return out.stderr.strip().removeprefix("nginx version: ")
