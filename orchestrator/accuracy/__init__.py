"""Accuracy: LoadGen accuracy log -> logits -> answers -> SQuAD v1.1 EM/F1 -> accuracy.txt.

Host-side code: it never imports an inference engine.
"""

from orchestrator.accuracy.logits import parse_accuracy_log, read_accuracy_log
from orchestrator.accuracy.metric import evaluate, normalize_answer
from orchestrator.accuracy.postprocess import get_final_text, predict, split_answered
from orchestrator.accuracy.report import AccuracyReport, format_report, score_logs, score_run

__all__ = [
    "AccuracyReport",
    "evaluate",
    "format_report",
    "get_final_text",
    "normalize_answer",
    "parse_accuracy_log",
    "predict",
    "read_accuracy_log",
    "score_logs",
    "score_run",
    "split_answered",
]
