"""Airflow loads plugins from this folder's top-level files: the DR posture page."""

from securedr.posture_plugin import SecureDrPosturePlugin

__all__ = ["SecureDrPosturePlugin"]
