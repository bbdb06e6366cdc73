# The official Airflow image with airflow-provider-oscar installed: every Airflow service of
# docker-compose.yaml runs it, and so does the embedded OSCAR (`oscar-local`).
#
#   docker build -t airflow-provider-oscar:local .                 # Airflow 3.3.2
#   docker build --build-arg AIRFLOW_VERSION=3.2.2 -t ... .        # another Airflow release
#
# Stage 1 builds the provider's wheel from this checkout; stage 2 installs it next to the
# image's own Airflow, pinned so that pip cannot change Airflow while resolving the provider.
ARG AIRFLOW_VERSION=3.3.2

FROM apache/airflow:${AIRFLOW_VERSION} AS wheel
COPY --chown=airflow:root pyproject.toml README.md /src/
COPY --chown=airflow:root airflow_provider_oscar /src/airflow_provider_oscar
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist /src

FROM apache/airflow:${AIRFLOW_VERSION}
ARG AIRFLOW_VERSION
COPY --from=wheel /tmp/dist/ /tmp/dist/
# The embedded OSCAR needs no extra here: it uses MinIO (no moto), and fastapi and uvicorn
# come with Airflow. Example service scripts run with the image's python3. The image's Celery
# stays below 5.7, whose removal of `retry` from celery.backends.database the Celery provider
# cannot survive (the same bounds as the `stack` dependency group of pyproject.toml).
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /tmp/dist/*.whl \
        "celery[redis]>=5.5,<5.7" "kombu>=5.5,<5.7" \
    && mkdir -p /opt/airflow/oscar-local
