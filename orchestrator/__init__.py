"""mlperf-bert: run, optimize and submit the MLPerf Inference BERT benchmark."""

__version__ = "0.1.0"
