"""The CeleryExecutor deployment's Airflow settings, in one place.

docker-compose.yaml (x-airflow-common) and the native ``celery`` profile of :mod:`sandbox.stack`
run the same topology with the same settings; ``tests/test_deployment.py`` checks that the
compose file says exactly what this module says, so the two cannot drift apart.

- :data:`SETTINGS` are identical in both.
- :data:`ENDPOINTS` name where the other services are; the values differ by nature (service
  names in compose, free loopback ports natively) but the kind of URL does not.
- :data:`SERVICES` maps each compose service to the native process that plays its part.
"""

from __future__ import annotations

#: The FabAuthManager SecureDR deploys (see securedr.auth_manager for what it adds).
AUTH_MANAGER = "securedr.auth_manager.SecureDRFabAuthManager"

SETTINGS: dict[str, str] = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
    "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "true",
    "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws"}',
}

#: Setting -> the URL scheme its value must have (the host part is the deployment's own).
ENDPOINTS: dict[str, str] = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://",
    # Driver named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed.
    "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql+psycopg2://",
    "AIRFLOW__CELERY__BROKER_URL": "redis://",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://",
    # One secret shared by every component, or Celery workers fail to authenticate to the API.
    "AIRFLOW__API_AUTH__JWT_SECRET": "",
    # Encrypts connections and variables in the database; compose takes it from .env.
    "AIRFLOW__CORE__FERNET_KEY": "",
}

#: compose service -> the native process (``airflow <args>``, or a server binary) that runs it.
SERVICES: dict[str, tuple[str, ...]] = {
    "postgres": ("postgres",),
    "redis": ("redis-server",),
    "airflow-apiserver": ("api-server",),
    "airflow-scheduler": ("scheduler",),
    "airflow-dag-processor": ("dag-processor",),
    "airflow-triggerer": ("triggerer",),
    "airflow-worker": ("celery", "worker"),
    "airflow-init": ("db", "migrate"),
    "sandbox-aws": ("sandbox.server",),
}

#: The Airflow components of the celery profile, in start order: name -> ``airflow`` arguments.
CELERY_COMPONENTS: dict[str, tuple[str, ...]] = {
    "api-server": SERVICES["airflow-apiserver"],
    "scheduler": SERVICES["airflow-scheduler"],
    "dag-processor": SERVICES["airflow-dag-processor"],
    "triggerer": SERVICES["airflow-triggerer"],
    "celery-worker": SERVICES["airflow-worker"],
}


def celery_environment(
    *, database_url: str, broker_url: str, api_url: str, jwt_secret: str, fernet_key: str
) -> dict[str, str]:
    """Every Airflow setting of the celery profile for one native deployment."""
    return {
        **SETTINGS,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__CORE__FERNET_KEY": fernet_key,
    }


#: Settings only the native stack sets: the log and health servers' ports, which are fixed in
#: containers (8793, 8794, 8974) but must be free ports on a host that other stacks share.
LOOPBACK_SETTINGS: tuple[str, ...] = (
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
)
