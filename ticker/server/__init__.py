"""The Tornado side: a node (hub, fan-out, broker, feeds, connections) behind its HTTP transports."""
