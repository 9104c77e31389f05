"""The hub's parts: Node.js, the proxy, the hub env, the config, the running service, TLS, probes over HTTP."""
