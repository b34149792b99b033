"""How many of Istio's own sample files apply cleanly: each file alone, as ``apply -f`` reads it.

    git clone --depth 1 https://github.com/istio/istio /tmp/istio   # any checkout of istio/istio
    /tmp/venv/bin/python -m bench.istio_samples /tmp/istio/samples [--json out.json]

Every ``*.yaml`` / ``*.yml`` under the folder is analysed offline, nothing applied (what
``shadowmesh analyze --offline -f FILE`` does): it *applies* when apply would take it (the
kinds shadowmesh does not act on skipped with their warning), and is *refused* when apply would
refuse it: a document that is not YAML (Helm templates: kubectl refuses them too), or one that
fails validation. Printed: the counts, and each refused file with its first error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shadowmesh.control.controller import analyze_files
from shadowmesh.errors import ConfigError, ConfigErrors, ParseError


def verdict(path: Path) -> tuple[str, str]:
    """("applies" | "not-yaml" | "invalid", the first error or "")."""
    try:
        analyze_files([(str(path), path.read_text(errors="replace"))], "default", {})
    except (ConfigErrors, ConfigError) as exc:
        errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        kind = "not-yaml" if all(isinstance(e, ParseError) for e in errors) else "invalid"
        return kind, str(errors[0]).splitlines()[0]
    return "applies", ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="istio/istio's samples/ folder")
    parser.add_argument("--json", type=Path, help="also write the verdicts here")
    args = parser.parse_args()
    files = sorted(p for p in args.folder.rglob("*") if p.suffix in (".yaml", ".yml"))
    verdicts = {str(p.relative_to(args.folder)): verdict(p) for p in files}
    counts: dict[str, int] = {}
    for kind, _ in verdicts.values():
        counts[kind] = counts.get(kind, 0) + 1
    print(f"{len(files)} files: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for name, (kind, error) in verdicts.items():
        if kind != "applies":
            print(f"  {kind}: {name}: {error[:160]}")
    if args.json:
        args.json.write_text(json.dumps({"counts": counts, "files": verdicts}, indent=1))


if __name__ == "__main__":
    main()
