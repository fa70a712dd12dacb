# syntax=docker/dockerfile:1
# The incident-ops image: Apache Airflow 3.3.2 (Python 3.11) + this project's locked runtime requirements.
#
#   docker build --target runtime -t peoplebooster/incident-ops:3.3.2 .          # Airflow + the collection
#   docker build --target sandbox -t peoplebooster/incident-ops-sandbox:3.3.2 .  # + the local stand-ins
#
# docker-compose.yaml builds both. The FROM tag must equal the apache-airflow pin in requirements.txt
# (tests/production/test_compose.py checks it): upgrading Airflow is one change of both, then `make lock`.

FROM apache/airflow:3.3.2-python3.11 AS runtime

USER airflow
# The runtime requirements (requirements.txt) resolved exactly as in requirements.lock; apache-airflow
# is named with the image's own version so that nothing can move it (Airflow's documented way).
COPY --chown=airflow:0 requirements.txt requirements.lock /opt/incident-ops/
RUN pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        -r /opt/incident-ops/requirements.txt \
        -c /opt/incident-ops/requirements.lock

# The code is part of the image (what production runs); docker-compose.yaml mounts the working tree
# over it read-only for development.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
ENV PYTHONPATH=/opt/airflow/plugins \
    INCIDENT_OPS_STATE_DIR=/opt/airflow/state
RUN mkdir -p /opt/airflow/state


# The sandbox (local stand-ins for AWS, Slack, PagerDuty, GitHub, Sentry and the PeopleBooster API):
# the same image plus the two stand-in packages of requirements-test.txt, at their locked versions.
# Never deployed; `docker compose --profile sandbox up` runs it for the demo.
FROM runtime AS sandbox

COPY --chown=airflow:0 requirements-test.txt /opt/incident-ops/
RUN grep -E '^(moto|trustme)\b' /opt/incident-ops/requirements-test.txt > /tmp/sandbox-requirements.txt \
    && pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        -r /tmp/sandbox-requirements.txt \
        -c /opt/incident-ops/requirements.lock \
    && rm /tmp/sandbox-requirements.txt
ENV PYTHONPATH=/opt/airflow/plugins:/opt/airflow/include
