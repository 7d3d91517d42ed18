"""Reading LoadGen's accuracy log: layouts it must accept and logs it must reject."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from orchestrator.accuracy.logits import read_accuracy_log
from orchestrator.errors import RunError


def loadgen_log(entries: Iterable[tuple[int, bytes]]) -> str:
    """An accuracy log laid out byte for byte as LoadGen 6.0 writes it (upper-case hex)."""
    lines = [
        f'{{ "seq_id" : {seq}, "qsl_idx" : {idx}, "data" : "{data.hex().upper()}" }}'
        for seq, (idx, data) in enumerate(entries)
    ]
    return "[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(text, encoding="ascii")
    return path


def test_reads_real_and_padded_lengths(tmp_path: Path) -> None:
    short = np.arange(2 * 57, dtype=np.float32).reshape(57, 2)
    full = -np.arange(2 * 384, dtype=np.float32).reshape(384, 2)
    path = _write(tmp_path, loadgen_log([(7, short.tobytes()), (0, full.tobytes())]))
    logits = read_accuracy_log(path)
    assert sorted(logits) == [0, 7]
    assert logits[7].dtype == np.float32 and logits[7].shape == (57, 2)
    assert np.array_equal(logits[7], short)
    # start and end interleaved per token: column 0 is start, column 1 is end.
    assert logits[0][3, 0] == -6.0 and logits[0][3, 1] == -7.0


def test_lower_case_hex_and_identical_repeats_are_accepted(tmp_path: Path) -> None:
    data = np.ones((4, 2), dtype=np.float32).tobytes()
    text = (
        f'[{{"seq_id": 0, "qsl_idx": 3, "data": "{data.hex()}"}},'
        f' {{"seq_id": 1, "qsl_idx": 3, "data": "{data.hex().upper()}"}}]'
    )
    logits = read_accuracy_log(_write(tmp_path, text))
    assert list(logits) == [3] and logits[3].shape == (4, 2)


def test_empty_log_is_an_empty_dict(tmp_path: Path) -> None:
    assert read_accuracy_log(_write(tmp_path, loadgen_log([]))) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[\n{ "seq_id" : 0, "qsl_idx" : 2, "data" : "0000', "not valid JSON"),  # a run cut short
        ('{"qsl_idx": 0}', "not a JSON list"),
        ('[{"seq_id": 0, "data": "00000000"}]', "no valid qsl_idx"),
        ('[{"seq_id": 0, "qsl_idx": -1, "data": "00000000"}]', "no valid qsl_idx"),
        ('[{"seq_id": 0, "qsl_idx": 0, "data": 5}]', "no hex data"),
        ('[{"seq_id": 0, "qsl_idx": 0, "data": "zz"}]', "not hex"),
        ('[{"seq_id": 0, "qsl_idx": 0, "data": "000000000000"}]', "not a multiple of 8"),
    ],
)
def test_rejects_malformed_logs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RunError, match=message):
        read_accuracy_log(_write(tmp_path, text))


def test_rejects_more_than_384_tokens(tmp_path: Path) -> None:
    data = np.zeros((385, 2), dtype=np.float32).tobytes()
    with pytest.raises(RunError, match="385 tokens .* more than 384"):
        read_accuracy_log(_write(tmp_path, loadgen_log([(0, data)])))


def test_a_repeat_with_other_logits_keeps_the_first_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # LoadGen repeats samples to fill the last MultiStream query; dynamic int8 makes repeats differ.
    a = np.zeros((3, 2), dtype=np.float32).tobytes()
    b = np.ones((3, 2), dtype=np.float32).tobytes()
    logits = read_accuracy_log(_write(tmp_path, loadgen_log([(5, a), (1, a), (5, b)])))
    assert sorted(logits) == [1, 5]
    assert not logits[5].any()  # the first answer
    assert "1 repeated sample(s) differ" in caplog.text


def test_missing_log_is_a_run_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="cannot be read"):
        read_accuracy_log(tmp_path / "nope.json")


def test_error_messages_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(RunError) as info:
        read_accuracy_log(_write(tmp_path, '[{"seq_id": 0, "qsl_idx": 0, "data": "00"}]'))
    message = str(info.value)
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message
