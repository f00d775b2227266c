# The inspect-otel receiver: OTLP in, MLflow out. Built by docker-compose.yml (service `receiver`).
# Pinned base so a rebuild next month gets the same Python; bump deliberately.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# hatchling builds the wheel from the sources (and README.md, the package's long description),
# so all of them must be in place before the install.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[mlflow]"

# Unprivileged; /data holds the receiver's durable spool (a named volume in compose).
RUN useradd --uid 10001 --create-home inspect && mkdir -p /data && chown inspect /data
USER 10001
VOLUME ["/data"]

# OTLP/HTTP and OTLP/gRPC, the receiver's CLI defaults.
EXPOSE 4318 4317

ENTRYPOINT ["inspect-otel"]
CMD ["receiver", "--host", "0.0.0.0", "--port", "4318", "--grpc-port", "4317", "--mlflow-uri", "http://mlflow:5000", "--data-dir", "/data"]
