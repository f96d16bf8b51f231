"""The FastAPI application: Hugging Face's text-classification routes (`POST /` and `POST /predict`), token
attributions (`POST /explain`), health, info, Prometheus metrics and the page, behind an optional API key.
Requests are read and checked here (`protocol`), predicted through the batching queue and explained in the
explanation thread; every refusal is JSON `{"error": ...}`.

Routes are added by the `*_routes` functions, one per concern, each called from `build_app`."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from textclf.errors import first_line
from textclf.serving.answers import ServedModel
from textclf.serving.batching import BatchingQueue, Overloaded
from textclf.serving.explanations import Explanations
from textclf.serving.metrics import MetricsMiddleware, ServerMetrics
from textclf.serving.protocol import Limits, RequestError, parse_explain_query, parse_query


@dataclass(frozen=True)
class ServerSettings:
    """The server's settings (conf/serve.yaml holds their defaults)."""

    limits: Limits
    max_batch_size: int
    max_wait_ms: float
    max_queued_texts: int
    max_queued_explanations: int
    shutdown_seconds: float
    api_key: str | None
    cors_origins: tuple[str, ...]
    retry_after_seconds: int


class Server:
    """What the routes share: the model, what /info says of it (read once, at start), its queue, its
    explanations (their explainer built at the first request), the metrics, whether it is ready."""

    def __init__(self, model: ServedModel, settings: ServerSettings) -> None:
        self.model, self.settings, self.metrics = model, settings, ServerMetrics()
        self.info = model.info()
        self.queue: BatchingQueue | None = None
        self.explanations = Explanations(
            model.checkpoint, str(model.predictor.device), settings.max_queued_explanations
        )
        self.ready = False

    def check_key(self, request: Request) -> None:
        """With an API key, the request must carry `Authorization: Bearer <key>` (compared in constant time)."""
        key = self.settings.api_key
        if key is None:
            return
        sent = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(sent, f"Bearer {key}".encode()):
            raise RequestError(401, "missing or wrong API key: send the header Authorization: Bearer <key>")

    async def read_body(self, request: Request) -> bytes:
        """The body, refused with 413 as soon as it is larger than the limit (whatever Content-Length says)."""
        limit = self.settings.limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"the body has {declared} bytes (at most {limit})")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"the body is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def predict(self, request: Request) -> JSONResponse:
        model = self.model
        query = parse_query(await self.read_body(request), self.settings.limits, model.pairs, model.task.regression)
        if self.queue is None or not self.ready:
            raise RequestError(503, "the server is not ready")
        try:
            logits = await self.queue.submit(query.texts, query.pairs)
        except Overloaded as error:
            raise RequestError(503, f"the server is busy: {error}; try again shortly") from None
        except Exception as error:
            raise RequestError(500, f"the prediction failed: {type(error).__name__}: {first_line(error)}") from None
        return JSONResponse(model.answers(logits, query.top_k, query.function_to_apply))

    async def explain(self, request: Request) -> JSONResponse:
        model = self.model
        query = parse_explain_query(await self.read_body(request), self.settings.limits, model.pairs, model.names)
        if not self.ready:
            raise RequestError(503, "the server is not ready")
        return JSONResponse(await self.explanations.explain(query))


def prediction_routes(server: Server) -> APIRouter:
    router = APIRouter(dependencies=[Depends(server.check_key)])
    router.add_api_route("/predict", server.predict, methods=["POST"])
    router.add_api_route("/", server.predict, methods=["POST"])
    return router


def explanation_routes(server: Server) -> APIRouter:
    """`POST /explain`: `textclf-explain`'s records for the inputs of `/predict`, behind the key as it is."""
    router = APIRouter(dependencies=[Depends(server.check_key)])
    router.add_api_route("/explain", server.explain, methods=["POST"])
    return router


def information_routes(server: Server) -> APIRouter:
    """`/health` (no key: a load balancer asks it), `/info` and `/metrics`."""
    router = APIRouter()

    @router.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"ready": server.ready}, status_code=200 if server.ready else 503)

    @router.get("/info", dependencies=[Depends(server.check_key)])
    async def info() -> dict[str, Any]:
        return server.info

    @router.get("/metrics", dependencies=[Depends(server.check_key)])
    async def metrics() -> Response:
        return Response(server.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    return router


PAGE = files("textclf.serving").joinpath("page.html")


def page_routes(server: Server) -> APIRouter:
    """The page to try the model: `GET /ui`, and `GET /` for a browser (JSON clients get /info there). The
    page is static and holds nothing of the model: it asks /info and /predict, with the key typed in it."""
    router = APIRouter()
    page = PAGE.read_text(encoding="utf-8")

    @router.get("/ui")
    async def ui() -> HTMLResponse:
        return HTMLResponse(page)

    @router.get("/")
    async def root(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(page)
        server.check_key(request)
        return JSONResponse(server.info)

    return router


def error_handlers(app: FastAPI, server: Server) -> None:
    """Every refusal as `{"error": ...}`: the server's own, Starlette's (404, 405) and anything unexpected."""

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
        if error.status == 503:
            headers["Retry-After"] = str(server.settings.retry_after_seconds)
        return JSONResponse({"error": error.message}, status_code=error.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {error.detail}"
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(error).__name__})"}, status_code=500)


def build_app(model: ServedModel, settings: ServerSettings) -> FastAPI:
    """The application serving `model` (loaded and warmed up already): ready once its queue runs."""
    server = Server(model, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.queue = BatchingQueue(
            model.logits, settings.max_batch_size, settings.max_wait_ms, settings.max_queued_texts, server.metrics
        )
        server.queue.start()
        server.ready = True
        yield
        server.ready = False
        await server.queue.stop(settings.shutdown_seconds)
        server.explanations.stop()

    app = FastAPI(title="textclf", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    routers = (information_routes(server), prediction_routes(server), explanation_routes(server), page_routes(server))
    for router in routers:
        app.include_router(router)
    error_handlers(app, server)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(MetricsMiddleware, metrics=server.metrics)
    app.state.server = server
    return app
