"""The FastAPI app over one engine: JSON routes under /v1, /healthz, /metrics, the web page at /
and an offline /docs. `create_app(engine)` builds it; `dupfinder serve` runs it with uvicorn.

Every engine call runs on one worker thread (`worker.EngineWorker`); limits are checked by the
request models and the body-size guard before any work; every user mistake is a 4xx whose message
says what to fix.
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations, which name
# request models built inside create_app

import contextlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Union

from fastapi import Depends, FastAPI, Path as PathParam, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from dupfinder import __version__
from dupfinder.errors import DupfinderError, IndexStoreError, InputError
from dupfinder.server import schemas
from dupfinder.server.metrics import Metrics
from dupfinder.server.schemas import Limits, request_models
from dupfinder.server.worker import EngineWorker
from dupfinder.store.base import AddReport, Question, plan_add, text_hash

STATIC = Path(__file__).parent / "static"
SOURCE = "http"  # the source recorded for questions added through the API
log = logging.getLogger("dupfinder.server")


class JSON(Response):
    """Compact UTF-8 JSON; no NaN (scores are finite cosines)."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _hit(h) -> dict:
    """Hit.to_dict()'s shape (verdict_score only where the pair head decided), without its
    dataclasses.asdict, which deep-copies field by field: 29 us a hit, 0.15 ms a search of k=5."""
    if h.verdict_score is None:
        return {"id": h.id, "text": h.text, "score": h.score, "duplicate": h.duplicate}
    return {"id": h.id, "text": h.text, "score": h.score, "duplicate": h.duplicate, "verdict_score": h.verdict_score}


def _error(status: int, detail: str, headers: dict | None = None) -> JSON:
    return JSON({"detail": detail}, status_code=status, headers=headers)


# ---------------------------------------------------------------- edges: body size and metrics


class Guard:
    """Pure ASGI middleware: refuses a body over the limit (by its Content-Length before reading,
    else while reading) and times every request into the metrics, by route template."""

    def __init__(self, app, limits: Limits, metrics: Metrics):
        self.app, self.limits, self.metrics = app, limits, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500
        limit = self.limits.max_body_bytes

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a chunked body with no Content-Length; answered by the HTTPException handler
                    raise HTTPException(413, f"the body is larger than this server's limit of {limit:,} bytes: send fewer questions per request")
            return message

        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                await _error(413, f"the body has {int(length):,} bytes; this server's limit is {limit:,}: send fewer questions per request")(
                    scope, receive, send_status)
                return
            await self.app(scope, counted_receive, send_status)
        finally:
            route = scope.get("route")
            label = route.path if route is not None else "/static/{file}" if scope["path"].startswith("/static/") else "other"
            self.metrics.observe(scope["method"], label, status, time.perf_counter() - start)


# ---------------------------------------------------------------- error messages


def _where(loc: tuple) -> str:
    """('body', 'questions', 3, 'text') -> questions[3].text"""
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "path", "query", "header") else loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "body"


def _validation_message(error: dict, fields: list[str]) -> str:
    where, kind, msg = _where(tuple(error.get("loc", ()))), error.get("type", ""), error.get("msg", "")
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", msg))
    if kind == "missing":
        return f"{where} is missing"
    if kind == "extra_forbidden":
        return f"{where} is not a field of this request (the fields are: {', '.join(fields)})"
    if kind in ("string_too_long", "too_long", "less_than_equal"):
        return f"{where}: {msg[0].lower() + msg[1:]} (this server's limit)"
    return f"{where}: {msg[0].lower() + msg[1:]}" if msg else where


def _install_error_handlers(app: FastAPI, examples: dict[str, dict]) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        example = examples.get(request.url.path)
        hint = f"; for example: {json.dumps(example)}" if example else ""
        if any(e.get("type") == "json_invalid" for e in errors):
            e = next(e for e in errors if e.get("type") == "json_invalid")
            what = (e.get("ctx") or {}).get("error", "JSON decode error")
            return _error(400, f"the body is not valid JSON ({what}): send one JSON object{hint}")
        content_type = request.headers.get("content-type", "")
        if request.method in ("POST", "PUT") and "json" not in content_type:
            return _error(415, f"send the body as JSON with the header Content-Type: application/json{hint}")
        route = request.scope.get("route")
        fields = []
        for param in getattr(getattr(route, "dependant", None), "body_params", []):
            fields += list(getattr(param.field_info.annotation, "model_fields", {}))
        messages = list(dict.fromkeys(_validation_message(e, fields) for e in errors))
        return _error(422, "; ".join(messages[:5]) + (f" (and {len(messages) - 5} more)" if len(messages) > 5 else "") + hint)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; the routes are listed at /docs"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs for its methods"
        return _error(exc.status_code, str(detail), getattr(exc, "headers", None))

    @app.exception_handler(DupfinderError)
    async def dupfinder_error(request: Request, exc: DupfinderError):
        # the index missing, corrupt or busy is the server's trouble, not the request's
        return _error(503 if isinstance(exc, IndexStoreError) else 400, str(exc))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        log.exception("error answering %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); this is a bug in dupfinder, please report it")


# ---------------------------------------------------------------- engine calls (run on the worker thread)


def _info(engine, writes_need_key: bool) -> dict:
    store = engine.store
    built = store.model
    return {"count": int(store.count), "kind": store.kind, "dimension": int(store.dim), "metric": "inner_product",
            "model": Path(built["path"]).name, "model_fingerprint": built["fingerprint"], "threshold": engine.threshold,
            "threshold_source": engine.verdict.source, "version": __version__, "writes_need_key": writes_need_key}


def _add(engine, questions: list[Question], upsert: bool) -> dict | JSON:
    """engine.add, with what happened to each question: the plan the engine follows, made first."""
    stored_ids, stored_hashes = engine.store.known(questions)
    hashes = [text_hash(q.text) for q in questions]
    conflicts = [q.user_id for q, h in zip(questions, hashes) if q.user_id in stored_ids and stored_ids[q.user_id] != h]
    if conflicts and not upsert:
        shown = ", ".join(conflicts[:10]) + (" ..." if len(conflicts) > 10 else "")
        return _error(409, f"already in the index with other text: id {shown}; send \"upsert\": true to replace their text, "
                           f"or use new ids; nothing was added")
    plan = plan_add(questions, stored_ids, stored_hashes, AddReport(), upsert)
    report = engine.add(questions, upsert=upsert)
    fresh = {i for i, _, _ in plan.fresh}
    replaced = set(plan.replace)
    outcomes, seen_ids, seen_hashes = [], set(), set()
    for i, (q, h) in enumerate(zip(questions, hashes)):
        if i in fresh:
            outcomes.append({"id": q.user_id, "status": "replaced" if q.user_id in replaced else "added", "reason": None})
        elif q.user_id is not None and q.user_id in seen_ids:
            outcomes.append({"id": q.user_id, "status": "skipped", "reason": "the same id and text came earlier in this request"})
        elif q.user_id is not None and q.user_id in stored_ids:
            outcomes.append({"id": q.user_id, "status": "skipped", "reason": "already indexed with this id and text"})
        elif h in seen_hashes:
            outcomes.append({"id": q.user_id, "status": "skipped", "reason": "the same text came earlier in this request"})
        else:
            outcomes.append({"id": q.user_id, "status": "skipped", "reason": "the same text is indexed already (under another id)"})
        if q.user_id is not None:
            seen_ids.add(q.user_id)
        seen_hashes.add(h)
    return {"added": report.added, "replaced": report.replaced, "skipped": len(questions) - report.added, "count": report.count,
            "questions": outcomes}


def _find(engine, wanted: str):
    """The stored question with user id `wanted`, else (a number) the one without a user id that has
    that store id, as `remove` resolves ids; None when there is none."""
    store = engine.store
    lookup = getattr(store, "lookup", None)
    if callable(lookup):
        return lookup([wanted]).get(wanted)
    stored_ids, _ = store.known([Question(wanted, wanted)])
    if wanted in stored_ids:
        db = getattr(store, "db", None)  # the local store's SQLite: the protocol has no lookup by user id yet
        if db is None:
            return None
        row = db.execute("SELECT id FROM questions WHERE user_id = ?", (wanted,)).fetchone()
        return store.get([row[0]]).get(row[0]) if row else None
    if wanted.isascii() and wanted.isdigit():  # not "¹": str.isdigit() takes it, int() does not
        record = store.get([int(wanted)]).get(int(wanted))
        return record if record is not None and record.user_id is None else None
    return None


def _remove(engine, wanted: str) -> dict | None:
    if _find(engine, wanted) is None:  # looked up first: any id a client sends resolves or is a 404
        return None
    try:
        report = engine.remove([wanted])
    except InputError:
        return None
    return {"removed": report.removed, "count": report.count}


# ---------------------------------------------------------------- the app


def create_app(engine, api_key: str | None = None, limits: Limits | None = None, max_search_batch: int = 8) -> FastAPI:
    """The HTTP app over `engine` (its store must be open). With `api_key`, writes need the header
    `Authorization: Bearer <api_key>`. `limits` bounds each request; `max_search_batch` the
    questions searched together in one engine call (see `EngineWorker`).

    >>> import uvicorn
    >>> uvicorn.run(create_app(Engine.open("indexes/mine"), api_key="s3cret"), port=8000)
    """
    limits = limits or Limits()
    models = request_models(limits)
    metrics = Metrics()
    worker = EngineWorker(engine, max_batch=max_search_batch)
    key = api_key.encode("utf-8") if api_key else None

    @contextlib.asynccontextmanager
    async def lifespan(app):
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(
        title="dupfinder", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        default_response_class=JSON,
        description=(
            "Find duplicate questions: search an index as users type, add and remove questions, screen a batch. "
            f"Limits: {limits.max_batch} questions per request, {limits.max_question_chars:,} characters per question, "
            f"k from 1 to {limits.max_k}, {limits.max_body_bytes:,} bytes per body. "
            + ("Writes need `Authorization: Bearer KEY`." if key else "This server takes writes without a key (it listens on loopback only).")
        ),
    )
    app.add_middleware(Guard, limits=limits, metrics=metrics)
    examples = {path: model.model_config["json_schema_extra"]["examples"][0] for path, model in
                [("/v1/search", models.SearchRequest), ("/v1/similarity", models.SimilarityRequest),
                 ("/v1/questions", models.AddRequest), ("/v1/screen", models.ScreenRequest)]}
    _install_error_handlers(app, examples)
    errors = {code: {"model": schemas.ErrorOut, "description": what} for code, what in
              [(400, "Bad JSON"), (413, "Body too large"), (415, "Not JSON"), (422, "Invalid request: the message says what to fix")]}
    write_errors = errors | {401: {"model": schemas.ErrorOut, "description": "Missing or wrong API key"}}
    bearer = HTTPBearer(auto_error=False, description="The server's API key (needed for writes when the server has one).")

    async def require_key(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if key is None:
            return
        if credentials is None:
            raise HTTPException(401, "this server needs its API key for writes: send the header Authorization: Bearer KEY",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode("utf-8"), key):
            raise HTTPException(401, "wrong API key: send the key the server was started with", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/healthz", tags=["service"], summary="Liveness")
    async def healthz() -> dict:
        if not worker.alive:
            return _error(503, "the engine thread is not running; restart the server")
        return JSON({"status": "ok"})

    @app.get("/v1/info", tags=["index"], response_model=schemas.InfoOut, summary="Index size, model and threshold")
    async def info():
        return JSON(await worker.call(_info, engine, key is not None))

    @app.post("/v1/search", tags=["search"], response_model=Union[schemas.SearchOne, schemas.SearchMany], responses=errors,
              summary="Nearest stored questions of one question or a batch")
    async def search(body: models.SearchRequest):
        if body.question is not None:
            (hits,) = await worker.search([body.question], body.k)
            return JSON({"hits": [_hit(h) for h in hits]})
        rows = await worker.search(body.questions, body.k)
        return JSON({"results": [{"hits": [_hit(h) for h in hits]} for hits in rows]})

    @app.post("/v1/similarity", tags=["search"], response_model=schemas.SimilarityOut, responses=errors,
              summary="Score and verdict of one pair")
    async def similarity(body: models.SimilarityRequest):
        return JSON(await worker.call(engine.similarity, body.question1, body.question2))

    @app.post("/v1/screen", tags=["search"], response_model=schemas.ScreenOut, responses=errors,
              summary="Each question's duplicates in the index and within the batch")
    async def screen(body: models.ScreenRequest):
        rows = await worker.call(engine.screen, body.questions, body.k)
        return JSON({"results": [{"in_index": [_hit(h) for h in row["in_index"]], "in_batch": row["in_batch"]} for row in rows]})

    @app.post("/v1/questions", tags=["questions"], response_model=schemas.AddOut,
              responses=write_errors | {409: {"model": schemas.ErrorOut, "description": "An id is stored with other text (and no upsert)"}},
              dependencies=[Depends(require_key)], summary="Add questions (durable when answered)")
    async def add(body: models.AddRequest):
        texts: dict[str, str] = {}
        for i, q in enumerate(body.questions):
            if q.id is not None and texts.setdefault(q.id, q.text) != q.text:
                return _error(422, f"questions[{i}].id {q.id!r} came earlier in this request with other text: send each id once")
        result = await worker.call(_add, engine, [Question(q.id, q.text, SOURCE) for q in body.questions], body.upsert)
        return result if isinstance(result, Response) else JSON(result)

    IdParam = Annotated[str, PathParam(min_length=1, max_length=limits.max_id_chars,
                                       description="Your id for the question, or the index's number for one added without an id.")]

    @app.get("/v1/questions/{id}", tags=["questions"], response_model=schemas.QuestionOut,
             responses={404: {"model": schemas.ErrorOut, "description": "No such question"}}, summary="One stored question")
    async def get_question(id: IdParam):  # noqa: A002 (the route's own name for it)
        record = await worker.call(_find, engine, id)
        if record is None:
            return _error(404, f"no question with id {id!r} in the index")
        return JSON({"id": record.display_id, "text": record.text, "source": record.source, "added": record.added})

    @app.delete("/v1/questions/{id}", tags=["questions"], response_model=schemas.RemoveOut, dependencies=[Depends(require_key)],
                responses=write_errors | {404: {"model": schemas.ErrorOut, "description": "No such question"}},
                summary="Remove one question (durable when answered)")
    async def remove_question(id: IdParam):  # noqa: A002
        result = await worker.call(_remove, engine, id)
        if result is None:
            return _error(404, f"no question with id {id!r} in the index; nothing was removed")
        return JSON(result)

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    async def prometheus():
        count = await worker.call(lambda: int(engine.store.count))
        text = metrics.render({
            "dupfinder_index_questions": ("gauge", "Questions in the index.", count),
            "dupfinder_search_batches_total": ("counter", "Engine calls that answered searches.", worker.batches),
            "dupfinder_searches_batched_total": ("counter", "Search requests answered by those calls.", worker.batched_searches),
        })
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return FileResponse(STATIC / "docs.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
