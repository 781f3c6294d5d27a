"""``tinylm serve``: a playground page and a JSON API over a trained run (needs ``tinylm[serve]``).

    pip install 'tinylm[serve]'
    tinylm serve --run runs/a1 --port 8000          # then open http://127.0.0.1:8000
    tinylm serve --run runs/a1 --compile            # compiled one-token steps: faster batch-1 sampling on a CPU

    curl -s localhost:8000/api/generate -d '{"prompt": "ROMEO:", "max_new_tokens": 100}'
    curl -sN localhost:8000/api/generate -d '{"prompt": "ROMEO:", "stream": true}'   # server-sent events
    curl -s localhost:8000/api/next-char -d '{"text": "ROMEO", "k": 15}'

Bodies are JSON whatever their Content-Type (``curl -d`` sends a form type). Bad requests (not UTF-8,
not JSON, unknown fields, wrong types, unseen characters, out-of-range parameters, too many tokens)
get HTTP 400 with ``{"error": "..."}``; a body over 256 KB gets 413 before it is parsed. At most
``max_generations`` generations run at once (``queue`` more wait); beyond that, 503 with Retry-After.
A client that disconnects stops its generation. Binds 127.0.0.1 unless ``--host`` says otherwise.
"""

import json
import os
import threading
from collections.abc import Callable
from importlib import resources

import torch

from tinylm.device import model_device
from tinylm.errors import TinyLMError
from tinylm.sampling import SamplingOptions, check_seed, next_token_probabilities, stream_text
from tinylm.sampling import generate as generate_ids
from tinylm.serve.inspector import add_inspector
from tinylm.serve.limits import BodyLimit, ClientGone, GenerationSlots, ServerBusy, parse_body

MAX_NEW_TOKENS = 2000  # per request: keeps one request from holding the server for minutes
MAX_PROMPT_CHARS = 10_000
DEFAULT_QUEUE = 16  # requests that may wait for a generation slot before the server answers 503
INSPECT_QUEUE = 32  # inspector requests that may wait (a page asks several at once, each bounded)


def playground_html() -> str:
    return resources.files("tinylm.serve").joinpath("static/playground.html").read_text(encoding="utf-8")


def check_text(tokenizer, text: str, name: str) -> None:
    if len(text) > MAX_PROMPT_CHARS:
        raise TinyLMError(f"{name} has {len(text)} characters; at most {MAX_PROMPT_CHARS} are accepted")
    unknown = tokenizer.unknown_characters(text)
    if unknown:
        raise TinyLMError(f"{name} contains characters this model never saw: {' '.join(map(repr, unknown))}")


def sse(event: str, payload: dict) -> str:
    """One server-sent event: ``event: NAME`` and a JSON ``data:`` line."""
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n"


def request_models():
    """The JSON bodies of the two POST endpoints (pydantic comes with the serve extra)."""
    from pydantic import BaseModel, ConfigDict

    class Strict(BaseModel):  # unknown fields are named in the 400, and "5" is not a number
        model_config = ConfigDict(extra="forbid", strict=True)

    class GenerateRequest(Strict):
        prompt: str = ""
        max_new_tokens: int = 200
        temperature: float = 1.0
        top_k: int | None = None
        top_p: float | None = None
        stop: str | None = None
        seed: int | None = None
        stream: bool = False

    class NextCharRequest(Strict):
        text: str = ""
        k: int = 15
        temperature: float = 1.0

    return GenerateRequest, NextCharRequest


def add_error_handlers(app) -> None:
    """User errors and malformed JSON become HTTP 400 with ``{"error": "one line"}``."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from tinylm.serve.limits import RETRY_AFTER_S

    @app.exception_handler(HTTPException)
    async def http_error(_, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(TinyLMError)
    async def user_error(_, exc: TinyLMError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(ServerBusy)
    async def busy(_, exc: ServerBusy):
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(ClientGone)
    async def gone(_, exc: ClientGone):
        return JSONResponse({"error": "client closed the request"}, status_code=499)

    @app.exception_handler(RequestValidationError)
    async def bad_json(_, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = "unknown field" if first.get("type") == "extra_forbidden" else first.get("msg", "invalid")
        return JSONResponse({"error": f"bad request: {where or 'body'}: {message}"}, status_code=400)


def default_max_generations() -> int:
    """One generation per core (each uses one torch thread with ``--threads 1``), at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def create_app(run_dir: str, device_name: str = "auto", max_generations: int | None = None,
               queue: int = DEFAULT_QUEUE, compiled: bool = False):
    """The FastAPI application serving ``run_dir``'s model; ``compiled``: generate through compiled steps."""
    from fastapi import FastAPI

    slots = GenerationSlots(max_generations or default_max_generations(), queue)
    app = FastAPI(title="tinylm playground")
    app.add_middleware(BodyLimit)
    add_error_handlers(app)
    # attention, logit lens, sampling knobs, embeddings, live training; `live` reloads a replaced checkpoint
    # The inspector's POST requests get slots of their own, so a page full of them never starves generations.
    inspect_slots = GenerationSlots(slots.running, max(queue, INSPECT_QUEUE))
    live = add_inspector(app, run_dir, inspect_slots, device_name)
    if compiled:  # compile now, not during the first request (a reloaded checkpoint has the same shapes)
        model = live.state.model
        generate_ids(model, torch.zeros((1, 1), dtype=torch.long, device=model_device(model)), 2, compiled=True)
    add_playground_routes(app, live, slots, compiled)
    return app


def add_playground_routes(app, live, slots: GenerationSlots, compiled: bool) -> None:
    """The page, /api/info, and the two generation routes, which run in ``slots``."""
    from fastapi import Request
    from fastapi.responses import HTMLResponse, StreamingResponse
    from starlette.background import BackgroundTask
    from starlette.concurrency import run_in_threadpool

    GenerateRequest, NextCharRequest = request_models()

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return playground_html()

    @app.get("/api/info")
    async def info() -> dict:  # async: answered on the event loop, never queued behind generations
        model, tokenizer = live.state.model, live.state.tokenizer  # no reload here: it must answer at once
        return {"vocab": tokenizer.chars, "block_size": model.block_size, "max_new_tokens": MAX_NEW_TOKENS,
                "generations": slots.info()}

    @app.post("/api/generate")
    async def generate(request: Request):
        req = parse_body(await request.body(), GenerateRequest)
        loaded = await run_in_threadpool(live.current)  # the newest checkpoint of a run still training
        model, tokenizer = loaded.model, loaded.tokenizer
        sampling, generator = prepare_generation(req, tokenizer, model)
        work = generation_work(model, tokenizer, req.prompt, sampling, req.stop, generator, compiled)
        ticket = slots.admit()
        if req.stream:
            events = stream_events(slots.stream(ticket, work))
            return StreamingResponse(events, media_type="text/event-stream", background=BackgroundTask(ticket.release),
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return {"prompt": req.prompt, "text": await slots.run(ticket, request, work)}

    @app.post("/api/next-char")
    async def next_char(request: Request) -> dict:
        req = parse_body(await request.body(), NextCharRequest)
        loaded = await run_in_threadpool(live.current)
        model, tokenizer = loaded.model, loaded.tokenizer
        check_next_char(req, tokenizer)
        top = await run_in_threadpool(next_token_probabilities, model, tokenizer, req.text, req.k, req.temperature)
        return {"text": req.text, "probs": [{"char": ch, "p": p} for ch, p in top]}


def check_next_char(req, tokenizer) -> None:
    check_text(tokenizer, req.text, "text")
    if not 1 <= req.k <= tokenizer.vocab_size:
        raise TinyLMError(f"k must be in 1..{tokenizer.vocab_size} (the vocabulary size), got {req.k}")
    if req.temperature == 0:
        raise TinyLMError("temperature must be > 0 for a distribution (0 means greedy when sampling)")
    SamplingOptions(temperature=req.temperature).validate()


def prepare_generation(req, tokenizer, model) -> tuple[SamplingOptions, torch.Generator | None]:
    """Validate a /api/generate request (TinyLMError -> 400); its Sampling and seeded generator."""
    check_text(tokenizer, req.prompt, "prompt")
    sampling = SamplingOptions(req.max_new_tokens, req.temperature, req.top_k, req.top_p).validate(MAX_NEW_TOKENS)
    if req.stop == "":
        raise TinyLMError("stop must be a non-empty string or null")
    generator = None
    if req.seed is not None:
        generator = torch.Generator(device=model_device(model)).manual_seed(check_seed(req.seed))
    return sampling, generator


def generation_work(model, tokenizer, prompt: str, sampling: SamplingOptions, stop, generator,
                    compiled: bool = False) -> Callable:
    """``work(cancel, emit)`` for GenerationSlots: the continuation, checking ``cancel`` between tokens."""
    def work(cancel: threading.Event, emit: Callable[[str], None] | None) -> str:
        text = ""
        for ch in stream_text(model, tokenizer, prompt, sampling, stop, generator, compiled=compiled):
            if cancel.is_set():
                break
            text += ch
            if emit is not None:
                emit(ch)
        return text
    return work


async def stream_events(pieces):
    """``char`` events, one per generated character, then one ``done`` event with the whole text."""
    text = ""
    async for ch in pieces:
        text += ch
        yield sse("char", {"char": ch})
    yield sse("done", {"text": text})
