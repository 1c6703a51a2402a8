"""Small helpers every adapter shares; no Airflow import, so the CLI stays quick to start."""

from __future__ import annotations

from typing import Any


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (empty for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` in consecutive batches of at most ``size`` (AWS per-call limits)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


class ServiceClients:
    """Named accessors over ``client(service, region)``, shared by every client provider."""

    def client(self, service: str, region: str) -> Any:
        raise NotImplementedError

    def ec2(self, region: str) -> Any:
        return self.client("ec2", region)

    def rds(self, region: str) -> Any:
        return self.client("rds", region)

    def kms(self, region: str) -> Any:
        return self.client("kms", region)

    def s3(self, region: str) -> Any:
        return self.client("s3", region)

    def sns(self, region: str) -> Any:
        return self.client("sns", region)
