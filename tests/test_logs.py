"""Log lines written while a progress bar is drawn start a line of their own (tqdm's writer clears the
bar and draws it again below), instead of gluing onto it: "0/100 [00:00<?, ?sample/s]18:11:47 INFO ..."."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator

import pytest
from tqdm import tqdm

from orchestrator import logs


@pytest.fixture(autouse=True)
def _normal_logging() -> Iterator[None]:
    logs.setup_logging(0)
    yield
    logs.setup_logging(0)


def test_a_log_line_during_a_progress_bar_is_a_line_of_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    bar = tqdm(total=100, desc="Offline performance", unit="sample", file=sys.stderr, mininterval=0)
    bar.update(3)
    logging.getLogger("mlperf-bert.test").info("the engine is warm")
    bar.update(3)
    bar.close()
    err = capsys.readouterr().err
    pieces = re.split(r"[\r\n]", err)
    line = r"\d\d:\d\d:\d\d INFO    mlperf-bert\.test: the engine is warm"
    assert any(re.fullmatch(line, p) for p in pieces), err
    assert not re.search(r"sample/s\]\d\d:\d\d", err), err
    assert "6/100" in err  # the bar went on below the line


def test_without_a_bar_a_log_line_is_written_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("mlperf-bert.test").warning("plain")
    err = capsys.readouterr().err
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING mlperf-bert\.test: plain\n", err), err
