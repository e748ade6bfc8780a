"""WebSocket feeds (aiohttp): the streaming engine, its upstream link and the providers."""
