"""Options dataclasses as argparse flags: env twins, flag over env, one-line exit 2 on bad values, typed results."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from feeds.options import FeedOptions
from tests.support.fakes.feed import StubFeed
from ticker.cli.flags import Parser, add_flags, read_flags
from ticker.cli.main import build_parser, parse
from ticker.cli.record import RecordConfig
from ticker.errors import OptionError
from ticker.options import nested, option, port, positive
from ticker.server.config import Config
from ticker.server.node import Node


def _even(text: str) -> int:
    value = int(text)
    if value % 2:
        raise OptionError(f"must be even, got {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Inner:
    depth: int = option(3, "how deep (3)", env="T_DEPTH", parse=int, group="inner things")


@dataclass(frozen=True, slots=True)
class Toy:
    name: str = option(help="who", env="T_NAME")  # required unless TICKER_T_NAME is set
    port: int = option(8888, "port", env="T_PORT", parse=port)
    rate: float = option(2.0, "rate", env="T_RATE", parse=positive(float))
    even: int = option(0, "an even number", parse=_even)
    loud: bool = option(False, "shout", env="T_LOUD")
    tags: list[str] = option(["a"], "tags", env="T_TAGS", flag="--tag", parse=lambda t: t.split(","))
    inner: Inner = nested(Inner, help={"depth": "overridden help"})
    internal: int = 7  # no option: the program sets it


def _parse(argv: list[str]) -> Toy:
    parser = Parser(prog="toy")
    add_flags(parser, Toy)
    return read_flags(Toy, parser.parse_args(argv))


def _exit_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        _parse(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_defaults_are_typed_and_each_instance_gets_its_own_list() -> None:
    toy = _parse(["--name", "x"])
    assert toy == Toy(name="x")
    assert (toy.port, toy.rate, toy.loud, toy.tags, toy.inner.depth, toy.internal) == (
        8888,
        2.0,
        False,
        ["a"],
        3,
        7,
    )
    assert _parse(["--name", "y"]).tags is not toy.tags


def test_env_twin_sets_the_default_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKER_T_PORT", "9000")
    monkeypatch.setenv("TICKER_T_RATE", "0.5")
    monkeypatch.setenv("TICKER_T_DEPTH", "5")
    monkeypatch.setenv("TICKER_T_TAGS", "b,c")
    monkeypatch.setenv("TICKER_T_LOUD", "yes")
    toy = _parse(["--name", "x"])
    assert (toy.port, toy.rate, toy.inner.depth, toy.tags, toy.loud) == (9000, 0.5, 5, ["b", "c"], True)
    toy = _parse(["--name", "x", "--port", "1", "--rate", "4", "--depth", "6", "--tag", "d"])
    assert (toy.port, toy.rate, toy.inner.depth, toy.tags) == (1, 4.0, 6, ["d"])


def test_switch_env_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for text, on in [("1", True), ("true", True), ("ON", True), ("0", False), ("no", False), ("", False)]:
        monkeypatch.setenv("TICKER_T_LOUD", text)
        assert _parse(["--name", "x"]).loud is on, text


def test_required_unless_the_env_twin_is_set(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    assert "the following arguments are required: --name" in _exit_line(capsys, [])
    monkeypatch.setenv("TICKER_T_NAME", "from-env")
    assert _parse([]).name == "from-env"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "toy: error: argument --port: port must be 0-65535, got '70000'\n"),
        (["--port", "x"], "toy: error: argument --port: invalid port value: 'x'\n"),
        (["--rate", "0"], "toy: error: argument --rate: must be positive, got '0'\n"),
        (["--rate", "fast"], "toy: error: argument --rate: invalid float value: 'fast'\n"),
        (["--even", "3"], "toy: error: argument --even: must be even, got '3'\n"),
    ],
)
def test_a_bad_value_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert _exit_line(capsys, ["--name", "x", *argv]) == message


def test_a_bad_env_value_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("TICKER_T_PORT", "-5")
    assert (
        _exit_line(capsys, ["--name", "x"]) == "toy: error: argument --port: port must be 0-65535, got '-5'\n"
    )
    assert _parse(["--name", "x", "--port", "5"]).port == 5  # a good flag wins over a bad env value


def test_help_lists_flags_groups_and_overrides() -> None:
    parser = Parser(prog="toy")
    add_flags(parser, Toy)
    text = parser.format_help()
    assert "--tag TAG" in text and "--loud" in text and "--internal" not in text
    assert "inner things:" in text and "overridden help" in text and "how deep" not in text


def test_serve_config_from_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKER_SIM_RATE", "7")
    monkeypatch.setenv("TICKER_MAX_SYMBOLS", "9")
    config = parse(
        ["serve", "--port", "0", "--symbols", "aapl,msft", "--replay-loop", "--log-level", "DEBUG"]
    )
    assert isinstance(config, Config)
    assert config.port == 0 and config.max_symbols == 9 and config.feeds == ["simulated"]
    assert config.feed_options == FeedOptions(symbols=["AAPL", "MSFT"], sim_rate=7.0, replay_loop=True)
    assert config.process.log_level == "debug"


def test_flush_duty_is_a_number_of_zero_or_more(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Config().flush_duty == 1.0
    monkeypatch.setenv("TICKER_FLUSH_DUTY", "3")
    assert parse(["serve"]).flush_duty == 3.0  # type: ignore[union-attr]
    assert parse(["serve", "--flush-duty", "0"]).flush_duty == 0.0  # type: ignore[union-attr]
    for bad, why in (("-1", "must be 0 or more"), ("nan", "must be 0 or more"), ("x", "must be a number")):
        with pytest.raises(SystemExit) as exc:
            parse(["serve", "--flush-duty", bad])
        assert exc.value.code == 2 and why in capsys.readouterr().err
    node = Node(Config(host="127.0.0.1", port=0, flush_duty=2.5), feeds=[StubFeed("sim")])
    assert node.fanout.duty == 2.5  # the fan-out's schedule takes it


def test_serve_feed_defaults_follow_the_broker(capsys: pytest.CaptureFixture[str]) -> None:
    assert Config().feeds == ["simulated"]
    assert Config(feed=["none"]).feeds == []
    with pytest.raises(SystemExit) as exc:
        parse(["serve", "--broker", "redis://127.0.0.1:6379/0", "--feed", "simulated"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith(
        "ticker: error: with --broker redis the feeds run in `ticker feed`"
    )


def test_record_needs_out(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["record"])
    assert capsys.readouterr().err == "ticker: error: record needs --out FILE\n"
    assert RecordConfig(out="x.jsonl").feeds == ["simulated"]


def test_help_of_each_command_builds_without_the_adapters() -> None:
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    sub: dict[str, argparse.ArgumentParser] = commands.choices
    assert set(sub) == {"serve", "record", "feed", "watch", "token"}
    serve_help = sub["serve"].format_help()
    assert "--feed FEED" in serve_help and "--alpaca-feed {iex,sip}" in serve_help
    assert "comma-separated symbols to carry" in serve_help
    assert "symbols always carried" in sub["feed"].format_help()
