"""The access flags of ``ticker serve`` and the ``ticker token`` command (in-process, no sockets)."""

from __future__ import annotations

import time

import pytest

from tests.support.jwtkeys import SECRET
from ticker.auth.options import AuthOptions
from ticker.auth.verifier import TokenVerifier
from ticker.cli.flags import Parser, add_flags
from ticker.cli.main import main, parse
from ticker.entitlements import EVERYTHING, Identity, Tier
from ticker.server.config import Config

ACCESS_ENV = (
    "TICKER_AUTH",
    "TICKER_JWT_SECRET",
    "TICKER_JWT_SECRET_FILE",
    "TICKER_JWT_AUDIENCE",
    "TICKER_JWT_ISSUER",
    "TICKER_DELAY",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ACCESS_ENV:
        monkeypatch.delenv(name, raising=False)


def test_serve_defaults_to_no_auth() -> None:
    config = parse(["serve"])
    assert isinstance(config, Config)
    assert config.access == AuthOptions()
    assert (config.access.auth, config.access.delay, config.access.jwt_jwks_min_refresh) == (
        "none",
        900.0,
        30.0,
    )


def test_serve_access_flags_and_env_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKER_AUTH", "jwt")
    monkeypatch.setenv("TICKER_DELAY", "3")
    config = parse(
        [
            "serve",
            "--jwt-jwks-url",
            "https://id.example/.well-known/jwks.json",
            "--jwt-jwks-min-refresh",
            "5",
            "--jwt-audience",
            "ticker",
            "--jwt-issuer",
            "https://id.example",
            "--jwt-leeway",
            "2.5",
            "--auth-timeout",
            "4",
            "--max-connections-per-user",
            "3",
            "--token-url",
            "/auth/token",
        ]
    )
    assert isinstance(config, Config)
    assert config.access == AuthOptions(
        auth="jwt",
        jwt_jwks_url="https://id.example/.well-known/jwks.json",
        jwt_jwks_min_refresh=5.0,
        jwt_audience="ticker",
        jwt_issuer="https://id.example",
        jwt_leeway=2.5,
        auth_timeout=4.0,
        max_connections_per_user=3,
        delay=3.0,
        token_url="/auth/token",
    )


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--auth", "basic"], "invalid choice"),
        (["--jwt-jwks-url", "file:///etc/jwks"], "http:// or https://"),
        (["--jwt-leeway", "-1"], "must be 0 or more"),
        (["--max-connections-per-user", "-2"], "must be 0 or more"),
        (["--delay", "0"], "must be positive"),
    ],
)
def test_bad_access_flags_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["serve", *argv])
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


def test_the_secret_is_no_flag() -> None:
    serve = Parser()
    add_flags(serve, Config)
    flags = {opt for action in serve._actions for opt in action.option_strings}
    assert "--auth" in flags and "--jwt-public-key" in flags and "--delay" in flags
    assert not any("secret" in f for f in flags)


# -- ticker token ----------------------------------------------------------------------------


async def token_of(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    monkeypatch.setenv("TICKER_JWT_SECRET", SECRET)
    assert main(["token", *argv]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return out.strip()


async def verify(token: str) -> Identity:
    verifier = await TokenVerifier.load(AuthOptions(auth="jwt"), {"TICKER_JWT_SECRET": SECRET})
    return await verifier.verify(token)


async def test_a_plain_token_is_real_time_for_everything(monkeypatch, capsys) -> None:
    before = time.time()
    identity = await verify(await token_of(["--sub", "alice", "--ttl", "120"], monkeypatch, capsys))
    assert identity.sub == "alice"
    assert before + 118 <= identity.exp <= time.time() + 121
    assert identity.entitlements is EVERYTHING


async def test_patterns_and_limits_make_the_ticker_claim(monkeypatch, capsys) -> None:
    argv = ["--sub", "bob", "--realtime", "aapl, binance:*", "--max-connections", "2", "--max-symbols", "9"]
    ent = (await verify(await token_of(argv, monkeypatch, capsys))).entitlements
    assert ent.realtime == ("AAPL", "BINANCE:*") and ent.delayed == ()
    assert (ent.max_connections, ent.max_symbols) == (2, 9)
    assert ent.tier("MSFT") is Tier.FORBIDDEN


async def test_delayed_alone_leaves_nothing_real_time(monkeypatch, capsys) -> None:
    ent = (await verify(await token_of(["--sub", "c", "--delayed", "*"], monkeypatch, capsys))).entitlements
    assert ent.realtime == () and ent.tier("AAPL") is Tier.DELAYED


async def test_a_limit_alone_keeps_everything_real_time(monkeypatch, capsys) -> None:
    ent = (
        await verify(await token_of(["--sub", "d", "--max-connections", "1"], monkeypatch, capsys))
    ).entitlements
    assert ent.tier("AAPL") is Tier.REALTIME and ent.max_connections == 1


async def test_audience_and_issuer_flags(monkeypatch, capsys) -> None:
    token = await token_of(["--sub", "e", "--audience", "ticker", "--issuer", "me"], monkeypatch, capsys)
    verifier = await TokenVerifier.load(
        AuthOptions(auth="jwt", jwt_audience="ticker", jwt_issuer="me"), {"TICKER_JWT_SECRET": SECRET}
    )
    assert (await verifier.verify(token)).sub == "e"


def test_token_without_a_secret_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--sub", "alice"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ticker: error: ") and "TICKER_JWT_SECRET" in lines[0]


def test_token_with_a_short_secret_is_refused(monkeypatch, capsys) -> None:
    monkeypatch.setenv("TICKER_JWT_SECRET", "s3cr3t-value")
    assert main(["token", "--sub", "alice"]) == 2
    err = capsys.readouterr().err
    assert "at least 32" in err and "s3cr3t" not in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "--sub"),
        (["--sub", "a", "--realtime", "AA$"], "invalid pattern"),
        (["--sub", "a", "--ttl", "0"], "must be positive"),
        (["--sub", "  "], "--sub must not be empty"),
    ],
)
def test_bad_token_flags_exit_2(argv: list[str], needle: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TICKER_JWT_SECRET", SECRET)
    with pytest.raises(SystemExit) as info:
        main(["token", *argv])
    assert info.value.code == 2
    assert needle in capsys.readouterr().err
