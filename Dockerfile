# Images for docker-compose.yaml.
# airflow: the official Airflow image plus SecureDR's pinned requirements.
FROM apache/airflow:3.3.2-python3.11 AS airflow
COPY requirements.txt /requirements.txt
# requirements.txt pins the Celery, FAB and PostgreSQL pieces as well.
RUN pip install --no-cache-dir -r /requirements.txt

# sandbox-aws: the moto server with SecureDR's additions (sandbox/moto_ext.py), for local runs.
FROM airflow AS sandbox
RUN pip install --no-cache-dir "moto[server]==5.2.5"
