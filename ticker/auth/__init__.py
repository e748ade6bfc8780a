"""Who is behind a connection: the ``--auth`` options and the verification of signed tokens (JWT).

:mod:`ticker.auth.options` is light (the command line imports it to list the flags);
:mod:`ticker.auth.verifier`, :mod:`ticker.auth.keys` and :mod:`ticker.auth.jwks` load PyJWT,
cryptography and aiohttp, and are imported only where tokens are verified or signed.
"""

from __future__ import annotations

from ticker.auth.options import AuthOptions, KeyLoadError

__all__ = ["AuthOptions", "KeyLoadError"]
