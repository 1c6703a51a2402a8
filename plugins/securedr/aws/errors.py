"""Small helpers every adapter shares; no Airflow import, so the CLI stays quick to start."""

from __future__ import annotations

from typing import Any

#: Attempts per AWS call (first try included). Standard mode backs off exponentially with jitter
#: (base 1 s, capped at 20 s), so 10 attempts ride out a throttling burst of about a minute
#: without turning a real outage into an endless wait.
#: https://docs.aws.amazon.com/boto3/latest/guide/retries.html
MAX_ATTEMPTS = 10
RETRY_MODE = "standard"


def retry_config() -> Any:
    """The botocore ``Config`` every client SecureDR builds uses: standard retry mode, bounded.

    Standard mode retries throttling (``RequestLimitExceeded``, ``Throttling``, ``SlowDown``...),
    transient 5xx (``InternalError``) and connection errors with exponential backoff; botocore's
    default (legacy, 5 attempts, no throttling backoff for every service) gives up on the first
    burst. Imported lazily so this module stays importable without botocore loaded.
    """
    from botocore.config import Config

    return Config(retries={"mode": RETRY_MODE, "total_max_attempts": MAX_ATTEMPTS})


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
