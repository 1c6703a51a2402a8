"""Where the realism layer meets moto: one wrapper round every request the server dispatches.

Query and JSON services (EC2, RDS, STS, KMS...) go through ``BaseResponse.call_action``; S3 goes
through ``S3Response.bucket_response`` / ``key_response``. Both wrappers build a :class:`Call`,
run the configured behaviours' ``before`` hooks (which may answer with an AWS error instead of
calling moto) and then their ``after`` hooks (which may rewrite moto's answer); observers then
see the request with its final answer.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from moto.core.responses import BaseResponse
from moto.s3.responses import S3Response

import sandbox.realism as realism

_ORIGINAL: dict[str, Any] = {}


def _flat_params(responder: BaseResponse) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, values in (getattr(responder, "querystring", None) or {}).items():
        params[key] = values[0] if isinstance(values, list) and len(values) == 1 else values
    body = getattr(responder, "body", None)
    if isinstance(body, (str, bytes)) and body[:1] in ("{", b"{"):
        with contextlib.suppress(ValueError):
            params.update(json.loads(body))
    return params


def _call_for(responder: BaseResponse) -> realism.Call:
    return realism.Call(
        service=getattr(responder, "boto3_service_name", None) or responder.service_name,
        action=responder._get_action() or "",
        region=getattr(responder, "region", "us-east-1"),
        account=getattr(responder, "current_account", ""),
        params=_flat_params(responder),
        responder=responder,
    )


def _call_action(self: BaseResponse) -> Any:
    if not realism._CONFIG:
        return _ORIGINAL["call_action"](self)
    call = _call_for(self)
    try:
        realism._run_before(call)
    except realism.AWSError as error:
        result = realism.error_response(self, error)
    else:
        result = realism._run_after(call, _ORIGINAL["call_action"](self))
    realism._observe(call, result)
    return result


def _s3_action(method: str, request: Any, full_url: str, is_key: bool) -> str:
    """A name for an S3 request: ``PutObject``, ``UploadPart``... (best effort)."""
    query = full_url.split("?", 1)[1] if "?" in full_url else ""
    if is_key:
        if method == "PUT":
            if "partNumber=" in query:
                return "UploadPart"
            if request.headers.get("x-amz-copy-source"):
                return "CopyObject"
            return "PutObject"
        if method == "POST":
            return "CompleteMultipartUpload" if "uploadId=" in query else "CreateMultipartUpload"
        if method == "DELETE":
            return "AbortMultipartUpload" if "uploadId=" in query else "DeleteObject"
        return "HeadObject" if method == "HEAD" else "GetObject"
    if method == "HEAD":
        return "HeadBucket"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if method == "GET":
        return "ListObjectVersions" if "versions" in query else "ListObjects"
    return f"{method.title()}Bucket"


def _wrap_s3(name: str, is_key: bool) -> Any:
    def wrapper(self: S3Response, request: Any, full_url: str, headers: Any) -> Any:
        if not realism._CONFIG:
            return _ORIGINAL[name](self, request, full_url, headers)
        self.setup_class(request)
        params = {k: v for k, v in request.headers.items()}
        params["full_url"] = full_url
        call = realism.Call(
            service="s3",
            action=_s3_action(request.method, request, full_url, is_key),
            region=getattr(self, "region", "us-east-1"),
            account=getattr(self, "current_account", ""),
            params=params,
            responder=self,
        )
        try:
            realism._run_before(call)
        except realism.AWSError as error:
            result = realism.error_response(self, error)
        else:
            result = realism._run_after(call, _ORIGINAL[name](self, request, full_url, headers))
        realism._observe(call, result)
        return result

    wrapper.__name__ = wrapper.__qualname__ = name  # moto's dispatch looks methods up by name
    return wrapper


def install() -> None:
    """Put the wrappers in place (idempotent)."""
    if _ORIGINAL:
        return
    _ORIGINAL["call_action"] = BaseResponse.call_action
    _ORIGINAL["bucket_response"] = S3Response.bucket_response
    _ORIGINAL["key_response"] = S3Response.key_response
    BaseResponse.call_action = _call_action  # type: ignore[method-assign]
    S3Response.bucket_response = _wrap_s3("bucket_response", False)  # type: ignore[method-assign]
    S3Response.key_response = _wrap_s3("key_response", True)  # type: ignore[method-assign]
