"""Every API error as one JSON shape, {"error": code, "detail": text} (schemas.ErrorOut)."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from egresswatch.errors import StoreError

CODES = {400: "bad_request", 401: "token_required", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 422: "bad_request", 503: "store_unavailable"}  # fmt: skip


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StoreError, _store_error)  # type: ignore[arg-type]


def error_response(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": CODES.get(status, "error"), "detail": detail}, status)


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail))


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return error_response(422, f"{where}: {first.get('msg', 'invalid')}")


async def _store_error(_request: Request, exc: StoreError) -> JSONResponse:
    return error_response(503, str(exc))
