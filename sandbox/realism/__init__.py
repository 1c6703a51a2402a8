"""The sandbox's realism layer: AWS as it really behaves, on top of moto.

Moto is lenient where AWS is not: copies finish instantly, describes are strongly consistent, and
there are no quotas, throttling or refusals. This package makes the sandbox behave the way AWS's
documentation says AWS behaves, with AWS's error codes and messages, so a test that passes here does
not pass only because the emulator is kind.

Each behaviour lives in its own module and is switched on by a named *section* with its own
parameters. Nothing is on until configured::

    from sandbox import realism

    realism.configure("throttle", every=3, services=["ec2"])
    with realism.section("quotas", ebs_copies_per_region=2):
        ...
    realism.use_profile("e2e")          # the e2e suites and ``make demo``
    realism.reset()

A behaviour module (any module of this package but ``hooks``) exposes ``before(call)`` (may raise
:class:`AWSError`) and/or ``after(call, result)`` (may rewrite the response), registers them with
:func:`behaviour`, may add its section to ``PROFILES["e2e"]`` and its state reset to
:func:`on_reset`. Modules are imported by :func:`install`.
Calls made by the sandbox's own helpers (estate builders, tests' direct backend access) never pass
through here: only HTTP requests to the moto server do.

Time: :func:`now` is the sandbox's clock, real time plus whatever :func:`advance` added. A test that
needs a copy to "take 3 hours" advances the clock instead of waiting.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from moto.core.exceptions import ServiceException

ENV_VAR = "SECUREDR_SANDBOX_REALISM"

TYPE_RESPONSE = tuple[int, dict[str, Any], Any]


class AWSError(ServiceException):
    """An error answered the way the named AWS service answers it (code, message, HTTP status)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class Call:
    """One HTTP request to the sandbox, as the realism layer sees it."""

    service: str  #: boto3 service name: ``ec2``, ``rds``, ``s3``, ``sts``, ``kms``...
    action: str  #: AWS action name, e.g. ``CopySnapshot``; for S3 the HTTP method and target
    region: str
    account: str
    params: dict[str, Any]  #: flattened request parameters (query protocols) or JSON body
    responder: Any = field(repr=False, default=None)  #: moto's response object

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    def param_list(self, prefix: str) -> list[Any]:
        """Values of a query-protocol list such as ``SnapshotId.1``, ``SnapshotId.2`` in order."""
        items = [(k, v) for k, v in self.params.items() if k.startswith(prefix + ".")]
        return [v for _, v in sorted(items, key=lambda kv: _index(kv[0], prefix))]


def _index(key: str, prefix: str) -> int:
    rest = key[len(prefix) + 1 :].split(".", 1)[0]
    return int(rest) if rest.isdigit() else 0


@dataclass
class Behaviour:
    name: str
    before: Callable[[Call], None] | None = None
    after: Callable[[Call, TYPE_RESPONSE], TYPE_RESPONSE] | None = None


_LOCK = threading.RLock()
_BEHAVIOURS: dict[str, Behaviour] = {}
_CONFIG: dict[str, dict[str, Any]] = {}
_CLOCK_OFFSET = 0.0

#: Named sets of sections. ``e2e`` is what the e2e suites and ``make demo`` run with: every
#: behaviour on, with durations short enough for a laptop.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {"e2e": {}}


def behaviour(
    name: str,
    *,
    before: Callable[[Call], None] | None = None,
    after: Callable[[Call, TYPE_RESPONSE], TYPE_RESPONSE] | None = None,
) -> None:
    """Register a behaviour module's hooks under its section name (idempotent)."""
    _BEHAVIOURS[name] = Behaviour(name, before, after)


_OBSERVERS: dict[str, Callable[[Call, TYPE_RESPONSE], None]] = {}


def observer(name: str, fn: Callable[[Call, TYPE_RESPONSE], None]) -> None:
    """Have ``fn(call, result)`` see every request while section ``name`` is on (idempotent).

    Unlike a behaviour's hooks, an observer sees each request exactly once with the answer it
    finally got: also when a ``before`` hook answered with an AWS error, and after every
    ``after`` hook. It must not change the answer.
    """
    _OBSERVERS[name] = fn


def configure(name: str, **params: Any) -> None:
    """Switch section ``name`` on with ``params`` (replacing earlier parameters)."""
    with _LOCK:
        _CONFIG[name] = dict(params)
        _reset_state(name)


def disable(name: str) -> None:
    with _LOCK:
        _CONFIG.pop(name, None)
        _reset_state(name)


def settings(name: str) -> dict[str, Any] | None:
    """The section's parameters, or ``None`` when it is off."""
    return _CONFIG.get(name)


def enabled() -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in _CONFIG.items()}


@contextlib.contextmanager
def section(name: str, **params: Any) -> Iterator[None]:
    """Switch a section on for the ``with`` block only."""
    before = _CONFIG.get(name)
    configure(name, **params)
    try:
        yield
    finally:
        if before is None:
            disable(name)
        else:
            configure(name, **before)


def use_profile(name: str, **overrides: dict[str, Any]) -> None:
    """Switch on every section of profile ``name``; ``overrides`` replace whole sections."""
    if name not in PROFILES:
        raise ValueError(f"unknown realism profile {name!r}; known: {', '.join(sorted(PROFILES))}")
    for section_name, params in {**PROFILES[name], **overrides}.items():
        configure(section_name, **params)


def configure_from_env(environ: dict[str, str] | None = None) -> None:
    """Apply ``$SECUREDR_SANDBOX_REALISM``: a profile name, ``off``, or JSON of sections."""
    value = (environ if environ is not None else os.environ).get(ENV_VAR, "").strip()
    if not value or value == "off":
        return
    if value.startswith("{"):
        for section_name, params in json.loads(value).items():
            configure(section_name, **params)
    else:
        use_profile(value)


_STATE_RESETTERS: dict[str, Callable[[], None]] = {}


def on_reset(name: str, resetter: Callable[[], None]) -> None:
    """Have ``resetter`` forget a behaviour's state whenever its section is (re)configured."""
    _STATE_RESETTERS[name] = resetter


def _reset_state(name: str) -> None:
    resetter = _STATE_RESETTERS.get(name)
    if resetter is not None:
        resetter()


def reset() -> None:
    """Every section off, every behaviour's state forgotten, the clock back to real time."""
    global _CLOCK_OFFSET
    with _LOCK:
        _CONFIG.clear()
        for resetter in _STATE_RESETTERS.values():
            resetter()
        _CLOCK_OFFSET = 0.0


def now() -> dt.datetime:
    """The sandbox's clock (UTC): real time plus everything :func:`advance` added."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=_CLOCK_OFFSET)


def advance(seconds: float) -> None:
    """Move the sandbox's clock forward, as if ``seconds`` had passed."""
    global _CLOCK_OFFSET
    with _LOCK:
        _CLOCK_OFFSET += seconds


def _run_before(call: Call) -> None:
    for name, item in list(_BEHAVIOURS.items()):
        if item.before is not None and name in _CONFIG:
            item.before(call)


def _run_after(call: Call, result: TYPE_RESPONSE) -> TYPE_RESPONSE:
    for name, item in list(_BEHAVIOURS.items()):
        if item.after is not None and name in _CONFIG:
            result = item.after(call, result)
    return result


def _observe(call: Call, result: TYPE_RESPONSE) -> None:
    for name, fn in list(_OBSERVERS.items()):
        if name in _CONFIG:
            fn(call, result)


def error_response(responder: Any, error: AWSError) -> TYPE_RESPONSE:
    """Serialise ``error`` in the protocol of the service ``responder`` answers for."""
    import warnings

    from moto.core.responses import ActionResult

    with warnings.catch_warnings():  # codes such as Throttling are not in the botocore models
        warnings.simplefilter("ignore", UserWarning)
        _status, headers, body = responder.serialized(ActionResult(error))
    headers = dict(headers)
    headers["status"] = error.status
    return error.status, headers, body


def _load_behaviours() -> None:
    """Import every behaviour module of this package; each registers itself on import."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if module.name != "hooks":
            importlib.import_module(f"{__name__}.{module.name}")


def install() -> None:
    """Load the behaviours and hook the layer into moto's request dispatch (idempotent)."""
    from sandbox.realism import hooks

    _load_behaviours()
    hooks.install()


__all__ = [
    "PROFILES",
    "AWSError",
    "Call",
    "advance",
    "behaviour",
    "configure",
    "configure_from_env",
    "disable",
    "enabled",
    "error_response",
    "install",
    "now",
    "observer",
    "on_reset",
    "reset",
    "section",
    "settings",
    "use_profile",
]
