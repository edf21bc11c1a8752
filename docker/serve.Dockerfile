# The serving image every target runs: the cloudhop inference server and nothing else
# (no torch, no Prefect): ONNX Runtime on CPU, Starlette/uvicorn, and the fsspec drivers for
# S3 (and CoreWeave's S3-compatible storage), GCS and Azure Blob.
#
#   docker build -f docker/serve.Dockerfile -t ghcr.io/cloudhop/serve:0.1.0 .
#   docker run -p 8080:8080 ghcr.io/cloudhop/serve:0.1.0 python -m cloudhop.serving \
#       --host 0.0.0.0 --port 8080 --store s3://bucket/cloudhop --model flights --version champion
#
# The per-cloud manifests (deployments/serving/generated/, from deployments/serving/serving.yaml)
# run it with the full command line; the store credentials come from the cloud identity
# (IAM task role, GCP service account, Azure managed identity) or secret env, never the image.
#
# BASE_IMAGE: any image with Python 3.11+ and `python -m pip` (`python -m ops.images build` uses
# a local Debian base where python:3.11-slim cannot be pulled). A CA bundle for pip, where TLS is
# intercepted, comes as a build secret and stays out of every layer: --secret id=ca,src=FILE.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false

WORKDIR /opt/cloudhop

# What `python -m cloudhop.serving` imports, and only that (checked below by importing it): the
# object stores' SDKs too, since the store's writes (the prediction log) go through each provider's
# backend, and cryptography for checking signed versions.
COPY constraints.txt ./
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python -m pip install -c constraints.txt \
        "numpy>=1.26,<2.7" "pandas>=2.2,<3.1" "pyarrow>=15" "onnxruntime>=1.20" \
        "starlette>=0.40" "uvicorn>=0.30" "orjson>=3.9" "prometheus-client>=0.20" "httpx>=0.27" \
        "fsspec>=2024.6" "s3fs>=2024.6" "gcsfs>=2024.6" "adlfs>=2024.7" "pyyaml>=6" "pydantic>=2.10,<3" \
        "boto3>=1.34" "google-cloud-storage>=2.16" "azure-storage-blob>=12.20" "azure-identity>=1.15" \
        "cryptography>=42"

# Only the library; installed without its training/orchestration dependencies.
COPY pyproject.toml README.md ./
COPY cloudhop ./cloudhop
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python -m pip install --no-deps . \
 && python -c "import cloudhop.serving.app, cloudhop.serving.__main__" \
 && groupadd --gid 1000 cloudhop \
 && useradd --create-home --uid 1000 --gid 1000 cloudhop

# Numeric, so a runtime that checks runAsNonRoot can see it is not root without reading /etc/passwd.
# The manifests run it with a read-only root filesystem and a writable /tmp.
USER 1000:1000
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/health')"
# No ENTRYPOINT: every manifest gives the whole command (ECS `command`, K8s/Cloud Run/Container Apps
# `command`), so the same image works the same way everywhere.
CMD ["python", "-m", "cloudhop.serving", "--help"]
