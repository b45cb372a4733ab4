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
# The pinned dependencies first (their layer is rebuilt only when the lock changes), then the project
# without dependencies: the image runs exactly the versions in requirements.lock.
COPY requirements.lock ./
RUN /opt/imagerank/bin/pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
COPY pipelines ./pipelines
COPY feature_repo ./feature_repo
RUN /opt/imagerank/bin/pip install --no-deps . \
 && /opt/imagerank/bin/pip check

FROM python:3.11-slim
ENV PATH=/opt/imagerank/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/imagerank
# A fixed numeric uid, so that Kubernetes can check runAsNonRoot against the image.
RUN groupadd --gid 10001 imagerank \
 && useradd --uid 10001 --gid 10001 --home-dir /home/imagerank --create-home --shell /usr/sbin/nologin imagerank
COPY --from=build /opt/imagerank /opt/imagerank
# The Feast repository at a fixed path (`feast -c /feature_repo ...`, IMAGERANK_FEATURE_REPO in the DaskJob's
# runner): Kubernetes mounts the cluster's feature_store.yaml over the embedded local one. The package also
# carries a copy (imagerank's default when nothing is configured).
COPY feature_repo /feature_repo
WORKDIR /home/imagerank
USER 10001:10001
CMD ["imagerank", "--help"]
