"""The proxy's pseudonym: the name it gives itself in the ``Via`` header (RFC 9110 7.6.3).

A request that already carries it has passed through this proxy before: a mirror or a route
pointed back at one of its own listeners. The data plane answers it 508 instead of forwarding
it again. The name must be the same in every worker of one proxy (a loop may come back on any
of them) and differ between two proxies chained on purpose, so it is drawn at random once and
kept in the state directory, next to the config store, which is what makes a proxy this one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "pseudonym"
PREFIX = "shadowmesh-"


def proxy_pseudonym(state_dir: str | Path) -> str:
    """This state directory's pseudonym, created on first use.

    Written to a temporary file and linked into place, so two processes starting at once both
    end up with the one that was linked first, and a crash never leaves half a name behind.
    """
    directory = Path(state_dir)
    path = directory / FILE_NAME
    name = _read(path)
    if name:
        return name
    directory.mkdir(parents=True, exist_ok=True)
    draft = directory / f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    draft.write_text(PREFIX + secrets.token_hex(6) + "\n", encoding="ascii")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    name = _read(path)
    if not name:
        raise OSError(f"{path}: holds no pseudonym; remove it and start again")
    return name


def _read(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError:
        return ""
    # A token (RFC 9110 5.6.2), so it can stand as a Via received-by; anything else is refused.
    if text and all(c.isalnum() or c in "-._" for c in text):
        return text
    return ""
