"""Peer servers the benchmark compares ticker against, each speaking enough of ticker's protocol."""
