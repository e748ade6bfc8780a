"""Why a provider could not be reached, in words: each failure names the host and what happened."""

from __future__ import annotations

import errno
import socket
import ssl
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from feeds import reasons

HOST = "stream.binance.com"


def _key(host: str = HOST) -> Any:
    """Enough of aiohttp's ConnectionKey for its connector errors."""
    return SimpleNamespace(host=host, port=443, ssl=True, is_ssl=True)


def _handshake(status: int) -> aiohttp.WSServerHandshakeError:
    info = aiohttp.RequestInfo(
        URL("wss://ws.finnhub.io/?token=s3cret"), "GET", CIMultiDictProxy(CIMultiDict())
    )
    return aiohttp.WSServerHandshakeError(info, (), status=status, message="Invalid response status")


def _verify_failed() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc.verify_message = "certificate has expired"
    return exc


def _wrong_version() -> ssl.SSLError:
    exc = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    exc.reason = "WRONG_VERSION_NUMBER"
    return exc


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (
            aiohttp.ClientConnectorDNSError(_key(), socket.gaierror(-2, "Name or service not known")),
            f"DNS lookup failed for {HOST}",
        ),
        (
            socket.gaierror(-3, "Temporary failure in name resolution"),
            f"DNS lookup failed for {HOST}",
        ),
        (
            aiohttp.ClientConnectorError(
                _key(), ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")
            ),
            f"{HOST} refused the connection",
        ),
        (  # happy eyeballs joins the failures of each address into one OSError with their common errno
            aiohttp.ClientConnectorError(_key(), OSError(errno.ECONNREFUSED, "Multiple exceptions: ...")),
            f"{HOST} refused the connection",
        ),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), f"{HOST} reset the connection"),
        (
            aiohttp.ClientConnectorError(_key(), OSError(errno.ENETUNREACH, "Network is unreachable")),
            f"cannot reach {HOST}: the network is unreachable",
        ),
        (TimeoutError(), f"{HOST} did not answer within 10 s"),
        (aiohttp.ConnectionTimeoutError(), f"{HOST} did not answer within 10 s"),
        (
            aiohttp.ClientConnectorCertificateError(_key(), _verify_failed()),
            f"TLS handshake with {HOST} failed: certificate has expired",
        ),
        (
            aiohttp.ClientConnectorSSLError(_key(), _wrong_version()),
            f"TLS handshake with {HOST} failed: wrong version number",
        ),
        (_handshake(503), f"{HOST} answered HTTP 503"),
        (_handshake(429), f"{HOST} is limiting our requests (HTTP 429)"),
        (_handshake(200), f"{HOST} did not accept the WebSocket upgrade (HTTP 200)"),
        (aiohttp.ServerDisconnectedError(), f"{HOST} closed the connection"),
        (
            aiohttp.ClientPayloadError("Response payload is not completed"),
            f"the answer from {HOST} was cut off",
        ),
        (OSError(errno.EACCES, "Permission denied"), f"cannot reach {HOST}: permission denied"),
        (aiohttp.ClientError("odd"), f"the connection to {HOST} failed (ClientError)"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else "",
)
def test_each_failure_in_words_naming_the_host(exc: BaseException, words: str) -> None:
    assert reasons.connection_failed(HOST, exc, within=10.0) == words


def test_a_connector_error_names_the_host_it_tried() -> None:
    exc = aiohttp.ClientConnectorDNSError(
        _key("fc.yahoo.com"), socket.gaierror(-2, "Name or service not known")
    )
    assert reasons.connection_failed("query1.finance.yahoo.com", exc) == "DNS lookup failed for fc.yahoo.com"


def test_a_timeout_without_its_length_still_says_what_happened() -> None:
    assert reasons.connection_failed(HOST, TimeoutError()) == f"{HOST} did not answer in time"


def test_refused_credentials_name_the_variables_to_check_and_never_the_url() -> None:
    words = reasons.connection_failed("ws.finnhub.io", _handshake(401), credentials=("FINNHUB_TOKEN",))
    assert words == "ws.finnhub.io refused the credentials (HTTP 401; check FINNHUB_TOKEN)"
    assert "s3cret" not in words
    assert (
        reasons.answered("api.alpaca.markets", 403, ("ALPACA_KEY_ID", "ALPACA_SECRET_KEY"))
        == "api.alpaca.markets refused the credentials (HTTP 403; check ALPACA_KEY_ID and ALPACA_SECRET_KEY)"
    )
    assert reasons.refused_credentials("finnhub.io") == "finnhub.io refused the credentials"
    assert reasons.check(("A", "B", "C")) == "check A, B and C" and reasons.check(()) == ""
