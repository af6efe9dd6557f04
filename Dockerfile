# The operator image. Build: docker build -t qdrant-collection-operator:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
# A fixed non-root UID so `runAsNonRoot` in manifests/ can verify it.
USER 65532:65532
ENTRYPOINT ["qdrant-collection-operator"]
CMD ["run", "--all-namespaces"]
