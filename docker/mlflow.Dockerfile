# MLflow for the compose stacks: the official image plus the PostgreSQL driver.
#
# ghcr.io/mlflow/mlflow:vX.Y.Z is core MLflow only, without database drivers, and SQLAlchemy's
# postgresql:// dialect imports psycopg (v3): without it `mlflow server` dies at start with
# "No module named 'psycopg'". (The -full variant ships the drivers and much more: cloud SDKs,
# the AI gateway; this adds one wheel.) Both pins move together with the tests' versions:
# MLflow as installed by `make test`, psycopg as the `postgres` extra resolves it.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir "psycopg[binary]==3.3.9"
