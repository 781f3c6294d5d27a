"""The inspector's JSON APIs and live events, added to the playground app by ``add_inspector(app, run_dir)``.

    curl -s localhost:8000/api/inspect/model
    curl -s localhost:8000/api/inspect/attention -d '{"text": "ROMEO:", "layer": 0, "head": 1}'
    curl -s localhost:8000/api/inspect/logit-lens -d '{"text": "ROMEO", "k": 5}'
    curl -s localhost:8000/api/inspect/sampling -d '{"text": "ROMEO", "temperature": 0.8, "top_k": 10}'
    curl -s localhost:8000/api/inspect/embeddings
    curl -sN localhost:8000/api/live/events       # server-sent events: reset, metric, checkpoint

The numbers are ``tinylm.inspect.probe``'s (the attention maps are those of ``tinylm viz attention``),
on the run's newest checkpoint: ``ckpt.pt`` is reloaded when it changes (``tinylm.serve.live``).
Bad requests get 400 with ``{"error": "..."}`` through the app's error handlers.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from importlib import resources

from tinylm.errors import TinyLMError
from tinylm.inspect import probe
from tinylm.serve.limits import GenerationSlots, parse_body
from tinylm.serve.live import LiveModel, MetricsTail

MAX_TEXT_CHARS = 10_000
POLL_SECONDS = 0.5  # how often the live stream looks at metrics.jsonl and ckpt.pt
HEARTBEAT_SECONDS = 15.0  # a comment line, so proxies and browsers keep an idle stream open
STATIC = {"inspector.js": "text/javascript; charset=utf-8", "live.js": "text/javascript; charset=utf-8",
          "inspector.css": "text/css; charset=utf-8"}


def request_models():
    """The JSON bodies of the inspector's POST endpoints: strict, unknown fields rejected."""
    from pydantic import BaseModel, ConfigDict

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

    class AttentionRequest(Strict):
        text: str
        layer: int | None = None  # None: every layer
        head: int | None = None  # None: every head

    class LensRequest(Strict):
        text: str  # the guesses are for the character after it
        k: int = 5

    class SamplingRequest(Strict):
        text: str = ""
        temperature: float = 1.0
        top_k: int | None = None
        top_p: float | None = None
        k: int = 20  # rows shown: the k most likely characters under the model

    return AttentionRequest, LensRequest, SamplingRequest


def checked_text(tokenizer, text: str, allow_empty: bool = False) -> str:
    if not text and not allow_empty:
        raise TinyLMError("text is empty; give at least one character")
    if len(text) > MAX_TEXT_CHARS:
        raise TinyLMError(f"text has {len(text)} characters; at most {MAX_TEXT_CHARS} are accepted")
    unknown = tokenizer.unknown_characters(text)
    if unknown:
        raise TinyLMError(f"text contains characters this model never saw: {' '.join(map(repr, unknown))}")
    return text


def check_index(name: str, value: int | None, count: int) -> slice:
    """The slice an optional layer/head index picks; out of range is a user error."""
    if value is None:
        return slice(None)
    if not 0 <= value < count:
        raise TinyLMError(f"{name} must be in 0..{count - 1}, got {value}")
    return slice(value, value + 1)


def check_k(k: int, vocab_size: int) -> int:
    if not 1 <= k <= vocab_size:
        raise TinyLMError(f"k must be in 1..{vocab_size} (the vocabulary size), got {k}")
    return k


def attention(state, req) -> dict:
    text = checked_text(state.tokenizer, req.text)
    weights = probe.attention_maps(state.model, state.tokenizer, text)  # (L, H, T, T)
    layers = check_index("layer", req.layer, weights.size(0))
    heads = check_index("head", req.head, weights.size(1))
    window = text[-weights.size(-1):]
    return {"tokens": list(window), "offset": len(text) - len(window), "step": state.step,
            "layer": req.layer, "head": req.head, "weights": weights[layers, heads].tolist()}


def logit_lens(state, req) -> dict:
    text = checked_text(state.tokenizer, req.text)
    k = check_k(req.k, state.tokenizer.vocab_size)
    probs = probe.logit_lens(state.model, state.tokenizer, text)[:, -1]  # (L + 1, V): at the last position
    top = probs.topk(k, dim=-1)
    layers = []
    for depth, (values, ids) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
        name = "embeddings" if depth == 0 else f"after block {depth}"
        layers.append({"depth": depth, "name": name,
                       "top": [{"char": state.tokenizer.decode([i]), "p": p} for i, p in zip(ids, values)]})
    return {"text": text, "step": state.step, "layers": layers}


def sampling(state, req) -> dict:
    text = checked_text(state.tokenizer, req.text, allow_empty=True)  # empty: the first character's odds
    k = check_k(req.k, state.tokenizer.vocab_size)
    dists = probe.sampling_distributions(state.model, state.tokenizer, text, req.temperature, req.top_k, req.top_p)
    order = dists["model"].argsort(descending=True)[:k].tolist()
    rows = [{"char": state.tokenizer.decode([i]), **{name: dist[i].item() for name, dist in dists.items()}}
            for i in order]
    return {"text": text, "step": state.step, "kept": int((dists["sampled"] > 0).sum()), "rows": rows}


def embeddings(state) -> dict:
    points = probe.embedding_pca(state.model)  # (V, 2)
    chars = state.tokenizer.chars
    return {"step": state.step, "points": [{"char": ch, "x": x, "y": y} for ch, (x, y) in zip(chars, points.tolist())]}


def model_info(state, live: LiveModel) -> dict:
    cfg = getattr(state.model, "config", None)
    return {"kind": type(state.model).__name__, "vocab": state.tokenizer.chars, "block_size": state.model.block_size,
            "n_layer": getattr(cfg, "n_layer", 0), "n_heads": getattr(cfg, "n_heads", 0),
            "step": state.step, "version": state.version, "error": live.error}


def sse(event: str, payload: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n"


async def live_events(live: LiveModel, poll_seconds: float, stopping) -> AsyncIterator[str]:
    """``reset``, a ``metric`` per metrics line (then per new line), ``checkpoint`` per new model.

    Ends when ``stopping()`` turns true (the server is shutting down): it would otherwise never end.
    """
    tail = MetricsTail(live.run.metrics)
    yield "retry: 1000\n" + sse("reset", {})
    shown, quiet = None, 0.0
    while not stopping():
        for event, payload in await asyncio.to_thread(tail.poll):
            yield sse(event, payload)
            quiet = 0.0
        described = await asyncio.to_thread(live.describe)
        key = (described["version"], described["error"])
        if key != shown:
            shown = key
            yield sse("checkpoint", described)
            quiet = 0.0
        if quiet >= HEARTBEAT_SECONDS:
            yield ": still here\n\n"
            quiet = 0.0
        await asyncio.sleep(poll_seconds)
        quiet += poll_seconds


def static_file(name: str) -> str:
    return resources.files("tinylm.serve").joinpath("static", name).read_text(encoding="utf-8")


def add_inspector(app, run_dir: str, slots: GenerationSlots, device_name: str = "auto",
                  poll_seconds: float = POLL_SECONDS) -> LiveModel:
    """Add the inspector's routes to ``app`` (``tinylm.serve.app.create_app``); returns the live model."""
    from fastapi.responses import Response, StreamingResponse
    from starlette.exceptions import HTTPException

    from tinylm.device import resolve_device

    live = LiveModel(run_dir, resolve_device(device_name))
    AttentionRequest, LensRequest, SamplingRequest = request_models()
    for path, model_class, compute in [("/api/inspect/attention", AttentionRequest, attention),
                                       ("/api/inspect/logit-lens", LensRequest, logit_lens),
                                       ("/api/inspect/sampling", SamplingRequest, sampling)]:
        app.post(path)(computed_route(live, slots, model_class, compute))

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:  # a fixed list: no path from the request reaches the file system
            raise HTTPException(404, f"no static file {name!r}; there are {', '.join(sorted(STATIC))}")
        return Response(static_file(name), media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    @app.get("/api/inspect/model")
    def info() -> dict:
        return model_info(live.current(), live)

    @app.get("/api/inspect/embeddings")
    def embeddings_route() -> dict:
        return embeddings(live.current())

    @app.get("/api/live/events")
    def events() -> StreamingResponse:
        stopping = getattr(app.state, "stopping", lambda: False)  # `tinylm serve` sets it; see cli/serve.py
        return StreamingResponse(live_events(live, poll_seconds, stopping), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return live


def computed_route(live: LiveModel, slots: GenerationSlots, model_class, compute):
    """A POST route answering ``compute(model state, request)`` as JSON.

    It takes a slot of ``slots`` as a generation does (503 when all are taken) and encodes its JSON
    there too: an attention map of a full window is ~13 MB of JSON, and eighty of them encoded on the
    event loop kept ``/api/info`` waiting for 10 s.
    """
    from fastapi import Request
    from fastapi.responses import Response

    async def route(request: Request) -> Response:
        req = parse_body(await request.body(), model_class)  # any content type, as the curl lines above send
        ticket = slots.admit()

        def work(cancel, emit) -> str:
            return json.dumps(compute(live.current(), req), allow_nan=False)

        return Response(await slots.run(ticket, request, work), media_type="application/json")

    return route
