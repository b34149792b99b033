"""The benchmark: shadowmesh against nginx, one worker each, on loopback; ``python -m bench``.

See ``bench/README.md`` for what it measures and how to read the table.
"""
