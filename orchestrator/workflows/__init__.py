"""The use cases: a benchmark run, a tune sweep, an int8 variant with its accuracy check, the submission
flow. The CLI and `orchestrator.api` call these; they call the domain packages (dataset, accuracy,
runners, containers, submission)."""
