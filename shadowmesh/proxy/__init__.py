"""The protocol-neutral proxy: one ``ProxyStream`` per request, policy only (see http.ports)."""
