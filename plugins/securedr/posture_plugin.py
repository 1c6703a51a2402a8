"""The Airflow plugin that puts the "DR posture" page into the Airflow UI.

It registers the FastAPI app of :mod:`securedr.posture_app` (``fastapi_apps``: the api-server
mounts it under ``/securedr-posture``, behind Airflow's authentication) and an external view
(``external_views``) that adds "DR posture" to the UI's navigation, showing the page inside
the UI. Airflow loads it through ``plugins/securedr_posture.py`` (the ``securedr`` package
itself is in ``.airflowignore``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from securedr.posture_app import create_app

URL_PREFIX = "/securedr-posture"


class SecureDrPosturePlugin(AirflowPlugin):
    name = "securedr_posture"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "SecureDR DR posture"}]
    external_views = [
        {
            "name": "DR posture",
            "href": URL_PREFIX + "/",
            "destination": "nav",
            "category": "browse",
            "url_route": "dr-posture",
        }
    ]
