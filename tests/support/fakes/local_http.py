"""Serve an aiohttp application on an ephemeral port of 127.0.0.1: the fakes' and test endpoints' one way."""

from __future__ import annotations

from aiohttp import web


async def start_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """Start ``app`` on 127.0.0.1 and an ephemeral port; (its runner, to ``cleanup()`` it, and the port)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]
