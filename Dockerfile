# The operator image for users with Docker (`make image` builds the same layout without Docker: CONTRIBUTING.md "Image").
#   docker build -t qdrant-collection-operator:0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
# BASE is pinned by digest (the multi-arch index of python:3.11-slim-bookworm). It could not be pulled
# where this file was written: the digest is the one another public project recorded from Docker Hub;
# verify it, and update it, with
#   docker buildx imagetools inspect python:3.11-slim-bookworm   # "Digest:" of the index
# and pass --build-arg BASE=python:3.11-slim-bookworm@sha256:<digest> to try a newer one first.
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM ${BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="qdrant-collection-operator" \
      org.opencontainers.image.description="A Kubernetes operator that manages Qdrant vector-database collections declaratively" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# A fixed non-root UID so `runAsNonRoot` in manifests/ can verify it.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["qdrant-collection-operator"]
CMD ["run", "--all-namespaces"]
