"""HTTP-polled feeds (aiohttp): the polling engine and the providers that need it."""
