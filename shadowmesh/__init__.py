"""shadowmesh: Istio's traffic management (weighted routing, mirroring) for any HTTP service."""

__version__ = "0.1.0"
