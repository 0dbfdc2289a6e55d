"""Gatewatch shared contracts: the metric catalog, the access-event schema and config-file loading.

The sidecar gateway (data plane) and the collector (control plane) never import each other;
they meet over HTTP and through the modules of this package.
"""

__version__ = "0.1.0"
