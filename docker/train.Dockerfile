# The training image every cloud work pool runs (Kubernetes on CoreWeave and AKS, ECS on EC2,
# Vertex AI): CUDA PyTorch from the official runtime image, cloudhop installed on top.
#
#   docker build -f docker/train.Dockerfile -t ghcr.io/cloudhop/train:latest .
#   docker build -f docker/train.Dockerfile --build-arg BASE_IMAGE=pytorch/pytorch:<tag> ...
#
# torch: the base image's CUDA build is kept, unless .build/wheels/ holds a torch wheel, which
# is installed instead (`python -m ops.images build` puts this machine's CPU wheel there and
# builds on python:3.11-slim or a local Debian base). The folder must exist; empty is fine:
# `mkdir -p .build/wheels` before a plain `docker build`. A CA bundle for pip, where TLS is
# intercepted, comes as a build secret and stays out of every layer: --secret id=ca,src=FILE.
#
# Prefect workers start it with their own command (`prefect flow-run execute`, the default
# here); the code sits in /opt/cloudhop, so deployments pull with set_working_directory there.
# The same image can run a worker: docker run IMAGE prefect worker start --pool coreweave-gpu
# The GPU driver comes from the host (NVIDIA container toolkit / the cloud's GPU node image).
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime

# What the dependency layer installs, worked out in a stage of its own: the core's dependencies
# and every cloud provider's extra (one image serves every pool), and constraints.txt without its
# torch pin (the base image's CUDA build is kept, or the wheel of .build/wheels/ installed). The
# image's stage copies only the two files written here, so the layer cache keys the dependency
# layer on them: an edit of pyproject.toml that leaves them alone (a test dependency, the
# version) keeps the layer instead of reinstalling everything.
FROM ${BASE_IMAGE} AS requirements
# Prefect 3.9 needs Python 3.11+: fail here, not at the first flow run, if the base is older.
RUN python -c "import sys; assert sys.version_info >= (3, 11), 'base image has Python ' + sys.version"
WORKDIR /tmp/requirements
COPY pyproject.toml constraints.txt ops/image_requirements.py ./
RUN python image_requirements.py --extras aws,gcp,azure,coreweave --drop torch \
        pyproject.toml constraints.txt /opt/requirements

FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PYTHONPATH=/opt/cloudhop

WORKDIR /opt/cloudhop

# Dependencies first, so a source change does not reinstall them.
COPY --from=requirements /opt/requirements/ /tmp/requirements/
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    --mount=type=bind,source=.build/wheels,target=/tmp/wheels \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && if ls /tmp/wheels/torch-*.whl >/dev/null 2>&1; then python -m pip install /tmp/wheels/torch-*.whl; fi \
 && python -m pip install -c /tmp/requirements/constraints.txt -r /tmp/requirements/requirements.txt \
 && python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

COPY pyproject.toml README.md prefect.yaml ./
COPY cloudhop ./cloudhop
COPY flows ./flows
COPY tasks ./tasks
COPY specs ./specs
COPY deployments ./deployments
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python -m pip install --no-deps . \
 && python -c "import cloudhop, flows, tasks, prefect, torch" \
 && groupadd --gid 1000 cloudhop \
 && useradd --create-home --uid 1000 --gid 1000 cloudhop \
 && chown -R 1000:1000 /opt/cloudhop

# Numeric, so a runtime that checks runAsNonRoot can see it is not root without reading /etc/passwd.
USER 1000:1000
CMD ["prefect", "flow-run", "execute"]
