# The image-builder service's image (DESIGN §7): the standard-library builder program plus
# PyYAML's pure-Python package. Build context, assembled by the reconciler:
#   reconciler/__init__.py, reconciler/protocol/*.py (the wire contract), reconciler/builder/*.py,
#   reconciler/actors/ (the FL runtime),
#   yaml/ (copied from the host's PyYAML)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# git clones the ML repository; images without it get it from Debian's mirror.
RUN command -v git >/dev/null 2>&1 || { \
        apt-get update \
        && apt-get install -y --no-install-recommends git ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    }

ENV PYTHONPATH=/opt/flops \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The build request is put at /run/secrets/flops-build-request (a swarm secret, or copied
# into the created container by the compose backend, which needs the directory); a trained
# model is copied to /flops/model.
RUN mkdir -p /run/secrets /flops

COPY yaml/ /opt/flops/yaml/
COPY reconciler/__init__.py /opt/flops/reconciler/__init__.py
COPY reconciler/protocol/ /opt/flops/reconciler/protocol/
COPY reconciler/builder/ /opt/flops/reconciler/builder/
# The FL runtime (flops_utils, the learner and aggregator programs, their pins) that the
# builder writes into every FL-actor build context.
COPY reconciler/actors/ /opt/flops/reconciler/actors/

# Fail the image build, not the first project build, when the program cannot start.
RUN python3 -c "import yaml, reconciler.builder.run, reconciler.builder.runtime as r; r.load_runtime()" \
    && git --version

ENTRYPOINT ["python3", "-m", "reconciler.builder"]
