"""The Redis key layout and URL checks (pure, no Redis needed); its messages are in test_quote_codec.py."""

from __future__ import annotations

import pytest

from ticker.broker import redis_layout as rc


def test_layout_names():
    lay = rc.Layout("tk")
    assert lay.channel("BRK.B") == b"tk:q:BRK.B"
    assert lay.symbol_of(b"tk:q:BRK.B") == "BRK.B"
    assert lay.demand("n1") == "tk:demand:n1" and lay.last == "tk:last" and lay.ctl == b"tk:ctl"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("rediss://user:pw@cache.internal:6380/2", True),
        ("redis://h", True),
        ("http://h:6379", False),
        ("redis://:6379/0", False),
        ("redis://h:70000/0", False),
        ("redis://h:6379/zero", False),
    ],
)
def test_check_url(url: str, ok: bool):
    if ok:
        assert rc.check_url(url) == url
    else:
        with pytest.raises(ValueError):
            rc.check_url(url)


def test_redact_hides_the_password():
    assert rc.redact("redis://user:secret@h:1/0") == "redis://user:***@h:1/0"
    assert "secret" not in rc.redact("redis://:secret@h:1/0")
    assert rc.redact("redis://h:1/0") == "redis://h:1/0"
