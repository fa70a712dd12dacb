# syntax=docker/dockerfile:1
# The incident-ops image: Apache Airflow 3.3.2 (Python 3.11) + this project's locked runtime requirements.
#
#   docker build -t peoplebooster/incident-ops:3.3.2 .                            # production (the last stage, runtime)
#   docker build --target runtime -t peoplebooster/incident-ops:3.3.2 .          # the same, named
#   docker build --target sandbox -t peoplebooster/incident-ops-sandbox:3.3.2 .  # the local stand-ins (demo only)
#
# Stages: `base` (Airflow + the locked requirements + what the runtime reads: dags/, plugins/,
# include/runbook, include/templates, include/iam), `sandbox` (base + the stand-ins and include/sandbox,
# built only by the compose `sandbox` profile) and `runtime` (base, the last stage: what a plain
# `docker build .` builds). Nothing of include/sandbox, moto or trustme is in the production image.
# docker-compose.yaml builds both. The FROM tag must equal the apache-airflow pin in requirements.txt
# (tests/production/test_compose.py checks it): upgrading Airflow is one change of both, then `make lock`.

FROM apache/airflow:3.3.2-python3.11 AS base

USER airflow
# The runtime requirements (requirements.txt) resolved exactly as in requirements.lock; apache-airflow
# is named with the image's own version so that nothing can move it (Airflow's documented way).
COPY --chown=airflow:0 requirements.txt requirements.lock /opt/incident-ops/
RUN pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        -r /opt/incident-ops/requirements.txt \
        -c /opt/incident-ops/requirements.lock

# The code is part of the image (what production runs); docker-compose.yaml mounts the same folders
# of the working tree over it read-only for development. Of include/ only what production needs: the
# runbook and the message templates, which the plugins read (incident_ops/core/runbook.py,
# core/messages.py), and the IAM policy document of the containers' role (include/iam, for reference).
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/runbook/ /opt/airflow/include/runbook/
COPY --chown=airflow:0 include/templates/ /opt/airflow/include/templates/
COPY --chown=airflow:0 include/iam/ /opt/airflow/include/iam/
ENV PYTHONPATH=/opt/airflow/plugins \
    INCIDENT_OPS_STATE_DIR=/opt/airflow/state
RUN mkdir -p /opt/airflow/state


# The sandbox (local stand-ins for AWS, Slack, PagerDuty, GitHub, Sentry and the PeopleBooster API):
# the base plus the two stand-in packages of requirements-test.txt, at their locked versions, and
# include/sandbox. Never deployed; only the compose `sandbox` service builds it (target: sandbox) for
# the demo (`docker compose --profile sandbox up`).
FROM base AS sandbox

COPY --chown=airflow:0 requirements-test.txt /opt/incident-ops/
RUN grep -E '^(moto|trustme)\b' /opt/incident-ops/requirements-test.txt > /tmp/sandbox-requirements.txt \
    && pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        -r /tmp/sandbox-requirements.txt \
        -c /opt/incident-ops/requirements.lock \
    && rm /tmp/sandbox-requirements.txt
COPY --chown=airflow:0 include/sandbox/ /opt/airflow/include/sandbox/
ENV PYTHONPATH=/opt/airflow/plugins:/opt/airflow/include


# Production: the last stage, so `docker build .` (no --target) builds it. The base as it is: Airflow,
# the locked requirements, dags/, plugins/ and include/{runbook,templates,iam}; no sandbox.
FROM base AS runtime
LABEL org.opencontainers.image.title="peoplebooster/incident-ops" \
      org.opencontainers.image.description="Apache Airflow + the incident-ops collection (no sandbox)"
