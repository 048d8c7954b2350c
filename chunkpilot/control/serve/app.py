"""The HTTP API: OpenAI's Files, Batches and Models endpoints over ``ServeState``. Routes only.

Every route first names the caller's tenant (``auth.tenant_for``), then reads or writes only
that tenant's objects. Every refusal is OpenAI's error object with a 4xx status
(``objects.ApiError``); an unexpected failure is a 500 with a one-line message — the
traceback goes to the server's log, never to the client. Batches are created in
``validating`` and moved on by the scheduler; the API itself never starts work.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from chunkpilot.errors import StoreError
from chunkpilot.control.serve.auth import tenant_for
from chunkpilot.control.serve.config import ServeConfig
from chunkpilot.control.serve.objects import (BATCH_PREFIX, CANCELLING, ENDPOINTS, IN_PROGRESS, TERMINAL, UPLOAD_PURPOSES,
                                    VALIDATING, ApiError, BatchRecord, check_metadata, list_page, new_id,
                                    window_seconds)
from chunkpilot.control.serve.state import ServeState
from chunkpilot.control.serve.uploads import receive_upload

log = logging.getLogger("chunkpilot.serve")
BATCH_FIELDS = {"input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"}
CONTENT_BLOCK = 1 << 20


def _limit(value: str | None, default: int, high: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= high:
        raise ApiError(400, f"limit must be an integer from 1 to {high}", param="limit", code="invalid_limit")
    return int(value)


def _cancel(batch: BatchRecord, now: float) -> BatchRecord | None:
    """``batch`` asked to cancel: ``cancelling`` from validating or in progress; unchanged if it already is."""
    if batch.status == CANCELLING:
        return None
    if batch.status not in (VALIDATING, IN_PROGRESS):
        raise ApiError(409, f"Cannot cancel a batch with status {batch.status!r}", param="batch_id",
                       code="batch_not_cancellable")
    return batch.entering(CANCELLING, now)


def new_batch(tenant: str, body: Any, input_purpose: str | None, now: float) -> BatchRecord:
    """The batch ``POST /v1/batches`` creates, from its JSON body; ApiError 400 for a bad one.
    ``input_purpose``: the input file's purpose (None: no such file)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_body")
    unknown = sorted(set(body) - BATCH_FIELDS)
    if unknown:
        raise ApiError(400, f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0],
                       code="unknown_parameter")
    for name in ("input_file_id", "endpoint", "completion_window"):
        if body.get(name) in (None, ""):
            raise ApiError(400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")
    if body["endpoint"] not in ENDPOINTS:
        raise ApiError(400, f"endpoint must be one of {', '.join(ENDPOINTS)}", param="endpoint", code="invalid_endpoint")
    seconds = window_seconds(body["completion_window"])
    if seconds is None:
        raise ApiError(400, "completion_window must be like '24h' (hours, 1 to 9999)", param="completion_window",
                       code="invalid_completion_window")
    problem = check_metadata(body.get("metadata"))
    if problem:
        raise ApiError(400, problem, param="metadata", code="invalid_metadata")
    if input_purpose is None:
        raise ApiError(404, f"No such file: {body['input_file_id']!r}", param="input_file_id", code="file_not_found")
    if input_purpose not in UPLOAD_PURPOSES:
        raise ApiError(400, f"input file {body['input_file_id']} has purpose {input_purpose!r}; upload it with "
                            "purpose 'batch'", param="input_file_id", code="invalid_input_file")
    return BatchRecord(id=new_id(BATCH_PREFIX, now), tenant=tenant, endpoint=body["endpoint"],
                       input_file_id=body["input_file_id"], completion_window=body["completion_window"],
                       status=VALIDATING, created_at=int(now), expires_at=int(now) + seconds,
                       metadata=body.get("metadata"))


def create_app(state: ServeState, config: ServeConfig) -> FastAPI:
    app = FastAPI(title="chunkpilot serve", openapi_url=None, docs_url=None, redoc_url=None)

    def tenant(request: Request) -> str:
        return tenant_for(request.headers.get("authorization"), config.keys)

    # -- errors: always OpenAI's shape ---------------------------------------------------------
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message = f"Invalid URL ({request.method} {request.url.path})" if exc.status_code in (404, 405) else str(exc.detail)
        return JSONResponse(ApiError(exc.status_code, message, code="unknown_url" if exc.status_code == 404 else None).body(),
                            status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return JSONResponse(ApiError(400, "invalid request").body(), status_code=400)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError):
        log.warning("store error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(ApiError(503, "the server's store is unavailable; retry", type="server_error",
                                     code="store_unavailable").body(), status_code=503)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(ApiError(500, "The server had an error while processing your request.",
                                     type="server_error").body(), status_code=500)

    # -- models ----------------------------------------------------------------------------------
    def model_object(name: str) -> dict[str, Any]:
        served = config.models[name]
        return {"id": name, "object": "model", "created": 0, "owned_by": "chunkpilot",
                "root": served.target or config.engine, "revision": served.revision}

    @app.get("/v1/models")
    def list_models(request: Request):
        tenant(request)
        return list_page([model_object(n) for n in sorted(config.models)], False)

    @app.get("/v1/models/{model:path}")
    def get_model(model: str, request: Request):
        tenant(request)
        if model not in config.models:
            raise ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
        return model_object(model)

    # -- files -----------------------------------------------------------------------------------
    @app.post("/v1/files")
    async def upload_file(request: Request):
        who = tenant(request)  # before a byte of the body is read
        upload = await receive_upload(request.headers.get("content-type"), request.headers.get("content-length"),
                                      request.stream(), config.max_upload_bytes)
        try:
            purpose = upload.fields.get("purpose", "").strip()
            if purpose not in UPLOAD_PURPOSES:
                raise ApiError(400, f"purpose must be one of {', '.join(UPLOAD_PURPOSES)} on this server, got "
                                    f"{purpose!r}", param="purpose", code="invalid_purpose")
            record = await run_in_threadpool(state.add_file, who, upload.path, upload.size, upload.filename, purpose)
        finally:
            os.unlink(upload.path)
        return record.to_openai()

    @app.get("/v1/files")
    def list_files(request: Request, purpose: str | None = None, after: str | None = None,
                   limit: str | None = None, order: str = "desc"):
        who = tenant(request)
        if order not in ("asc", "desc"):
            raise ApiError(400, "order must be 'asc' or 'desc'", param="order")
        found, more = state.list_files(who, purpose, after, _limit(limit, 10000, 10000), order == "desc")
        return list_page([f.to_openai() for f in found], more)

    @app.get("/v1/files/{file_id}")
    def get_file(file_id: str, request: Request):
        return state.get_file(tenant(request), file_id).to_openai()

    @app.get("/v1/files/{file_id}/content")
    def file_content(file_id: str, request: Request):
        stream = state.open_content(tenant(request), file_id)

        def blocks():
            with stream:
                while block := stream.read(CONTENT_BLOCK):
                    yield block

        return StreamingResponse(blocks(), media_type="application/octet-stream")

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str, request: Request):
        who = tenant(request)
        state.get_file(who, file_id)
        users = state.files_in_use(who, file_id)
        if users:
            raise ApiError(409, f"file {file_id} is the input of batch {users[0]}, which has not finished; cancel it "
                                "or wait", param="file_id", code="file_in_use")
        state.delete_file(who, file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    # -- batches -----------------------------------------------------------------------------------
    @app.post("/v1/batches")
    async def create_batch(request: Request):
        who = tenant(request)
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON", code="invalid_json") from None

        def create() -> dict[str, Any]:
            file_id = body.get("input_file_id") if isinstance(body, dict) else None
            purpose = None
            if isinstance(file_id, str):
                try:
                    purpose = state.get_file(who, file_id).purpose
                except ApiError:
                    purpose = None
            record = new_batch(who, body, purpose, time.time())
            return state.create_batch(record).to_openai()

        return await run_in_threadpool(create)

    @app.get("/v1/batches")
    def list_batches(request: Request, after: str | None = None, limit: str | None = None):
        found, more = state.list_batches(tenant(request), after, _limit(limit, 20, 100))
        return list_page([b.to_openai() for b in found], more)

    @app.get("/v1/batches/{batch_id}")
    def get_batch(batch_id: str, request: Request):
        return state.get_batch(tenant(request), batch_id).to_openai()

    @app.post("/v1/batches/{batch_id}/cancel")
    def cancel_batch(batch_id: str, request: Request):
        who = tenant(request)
        state.get_batch(who, batch_id)
        return state.update_batch(who, batch_id, lambda b: _cancel(b, time.time())).to_openai()

    return app


__all__ = ["create_app", "new_batch", "TERMINAL"]
