# imagerank: the CLI, the Dask pipelines and the Feast feature repository in one image. The same image
# runs the recalculation's scheduler, workers and job runner (k8s/base/recalculate/daskjob.yaml) and the
# Feast feature server (k8s/base/feature-server.yaml), so Dask task code and library versions match.
#   docker build -t imagerank:0.1.0 .
#   docker run --rm imagerank:0.1.0 imagerank --help

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler only for dependencies without a wheel for this platform; it stays in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/imagerank
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY pipelines ./pipelines
RUN /opt/imagerank/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/imagerank/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/imagerank
# A fixed numeric uid, so that Kubernetes can check runAsNonRoot against the image.
RUN groupadd --gid 10001 imagerank \
 && useradd --uid 10001 --gid 10001 --home-dir /home/imagerank --create-home --shell /usr/sbin/nologin imagerank
COPY --from=build /opt/imagerank /opt/imagerank
# The Feast repository (`feast -c /feature_repo ...`); Kubernetes mounts its cluster feature_store.yaml over
# the embedded local one.
COPY feature_repo /feature_repo
WORKDIR /home/imagerank
USER 10001:10001
CMD ["imagerank", "--help"]
