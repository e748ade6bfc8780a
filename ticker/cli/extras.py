"""The ``[server]`` extra: what the ``ticker`` command needs beyond the client, and the hint when it is missing."""

from __future__ import annotations

import sys
from importlib.util import find_spec

#: The distribution's name (``ticker`` on the package index is an unrelated project).
DISTRIBUTION = "ticker-push"
#: Import names of the ``[server]`` extra's packages that the command line loads (setup.cfg lists them).
SERVER_MODULES = ("tornado", "prometheus_client", "redis", "rich", "jwt")


def missing_server_modules() -> list[str]:
    """The modules of :data:`SERVER_MODULES` that cannot be imported here (without importing them)."""
    return [name for name in SERVER_MODULES if find_spec(name) is None]


def require_server_extra() -> None:
    """On a client-only install, exit with status 2 and one line saying what to install."""
    missing = missing_server_modules()
    if missing:
        sys.stderr.write(
            f"ticker: error: the ticker command needs the server dependencies ({', '.join(missing)} "
            f"missing): pip install '{DISTRIBUTION}[server]'\n"
        )
        raise SystemExit(2)
