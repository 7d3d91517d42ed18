"""Everything that talks to Docker: the client (connect, error mapping, retries), the per-target images,
the pre-flight checks and the Docker runner. Imports go one way: client <- images <- preflight <- runner.
"""
