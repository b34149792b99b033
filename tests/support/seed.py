"""The seed scenario's documents (as in examples/httpbin/), for tests of the control plane."""

from __future__ import annotations

WORKLOADS = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin-v1}
spec:
  address: 127.0.0.1
  ports: {http: 18081}
  labels: {app: httpbin, version: v1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin-v2}
spec:
  address: 127.0.0.1
  ports: {http: 18082}
  labels: {app: httpbin, version: v2}
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: httpbin}
spec:
  ports: [{name: http, port: 8000, targetPort: 80}]
  selector: {app: httpbin}
"""
ROUTE_V1 = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {host: httpbin, subset: v1}
      weight: 100
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
