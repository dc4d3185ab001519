# syntax=docker/dockerfile:1
# First working image of the stream workers (the Deployment issue completes it: CUDA variant, chart, health check).
# Multi-stage: wheels are built with pip in a builder stage; the runtime stage installs them without build tools.
FROM python:3.11-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY trainer ./trainer
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 adaptlog
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["adaptlog"]
CMD ["run"]
