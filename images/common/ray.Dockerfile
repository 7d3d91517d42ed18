# A backend's image with Ray added: the nodes of `mlperf-bert cluster up` (orchestrator/containers/cluster.py).
#
# Built by `cluster up` FROM mlperf-bert/<key>:latest with no network: Ray and its dependencies come from the
# host's wheelhouse (wheelhouse/ray-<key>/, downloaded by pip for the image's Python and glibc). Ray's version
# is the host's (the driver's), so that every node of the cluster runs the same Ray. No token or secret is
# baked in: Ray's token reaches the containers as an environment variable when they start.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG RAY_VERSION
USER root
COPY wheelhouse/ /tmp/ray-wheelhouse/
RUN /opt/venv/bin/python -m pip install --no-index --find-links /tmp/ray-wheelhouse --no-cache-dir \
        --disable-pip-version-check --no-warn-script-location --quiet "ray==${RAY_VERSION}" \
    && rm -rf /tmp/ray-wheelhouse \
    && /opt/venv/bin/python -c "import ray, orchestrator.harness.spec; assert ray.__version__ == '${RAY_VERSION}'"
USER mlperf
LABEL mlperf-bert.ray="${RAY_VERSION}"
