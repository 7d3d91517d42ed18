"""Everything that talks to Docker. Imports go one way, each module using only those before it:

client          connect to the engine; one retry policy; SDK errors as one DockerError sentence
container_spec  one container described once, rendered as the SDK call and as `docker run`
images          the per-target images: recipes, wheelhouse, build, list
preflight       what a run needs, checked before its container starts (host, engine, image, GPU)
docker_runner   the Runner: the harness in one container per run
"""
