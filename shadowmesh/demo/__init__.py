"""``shadowmesh demo``: Istio's traffic-mirroring tutorial played on this machine.

The demo drives shadowmesh from the outside, as a user would: real httpbin under gunicorn, the
``shadowmesh serve`` process, and the client verbs as subprocesses. It imports nothing of the
proxy, so what it shows is what the shipped commands do. The end-to-end tests reuse its process
and access-log helpers.
"""
