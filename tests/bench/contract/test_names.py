"""bench.contract.names: the vocabulary every layer takes from one place."""

from __future__ import annotations

import datetime as dt

from bench.contract.names import RESULT_FILE_RE, RUNTIMES, TRANSPORTS, result_file_name, run_dir_name
from server.runtimes import RUNTIMES as SERVER_RUNTIMES


def test_the_runtimes_are_the_servers_own() -> None:
    assert RUNTIMES is SERVER_RUNTIMES


def test_result_file_names_parse_back() -> None:
    for transport in TRANSPORTS:
        name = result_file_name("delay-50", transport, 3)
        match = RESULT_FILE_RE.fullmatch(name)
        assert match is not None
        assert (match["scenario"], match["transport"], match["rep"]) == ("delay-50", transport, "3")


def test_run_dir_name_is_utc_and_profile() -> None:
    when = dt.datetime(2026, 11, 27, 20, 15, 0, tzinfo=dt.UTC)
    assert run_dir_name("quick", when) == "20261127T201500Z-quick"
