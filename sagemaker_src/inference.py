"""SageMaker inference handlers (CONTRACTS §3): model_fn, input_fn, predict_fn, output_fn.

Requests are validated in ``predict_fn`` too, because callers may skip ``input_fn`` and pass the
parsed dict directly. Every client mistake raises ``BadRequest`` (a ValueError with
``status_code = 400``); ``error_body`` renders it as ``{"error": "..."}`` for the serving layer.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

# One BLAS/OpenMP thread per serving process (the pools read these when the libraries load; model_fn pins
# them again through threadpoolctl, for servers that imported numpy before this module).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recsys_core.bundle import EXCLUDE_MODES, BadRequest, Bundle  # noqa: E402
from recsys_core.rules import (  # noqa: E402
    ExplorationConfig,
    RuleError,
    parse_exploration,
    parse_filters,
    parse_promotion,
)
from recsys_core.suppression import from_environment as suppression_list  # noqa: E402

_NO_EXPLORATION = ExplorationConfig()  # validation without a model: the default share does not matter

JSON = "application/json"
MAX_K = 1000
MAX_BATCH = 1000
MAX_IDS = 1000
#: ``strategy`` a request may ask for; "auto" (the default) is what the request's fields imply.
STRATEGIES = ("auto", "trending")


__all__ = ["BadRequest", "error_body", "input_fn", "model_fn", "output_fn", "predict_fn"]


def error_body(exc: Exception) -> dict[str, str]:
    return {"error": str(exc)}


def model_fn(model_dir: str) -> Bundle:
    """Load the artefacts written by train.py, then pin this process's BLAS and OpenMP pools to one thread.

    Servers run one worker process per core (``recsys serve --workers``; SageMaker's model server one
    per vCPU): a request is one thread's work, and a BLAS pool per worker sized to every core makes
    the workers' threads fight over the same cores (the p99 of a 2-worker server on 2 cores tripled).
    Pinned here, after the model's libraries are loaded, so it holds whoever imported numpy first.
    """
    bundle = Bundle.load(model_dir)
    pin_threads()
    return bundle


def pin_threads(threads: int = 1) -> None:
    """Limit every loaded BLAS and OpenMP pool of this process to ``threads``."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def input_fn(body: str | bytes | bytearray, content_type: str = JSON) -> dict[str, Any]:
    """Parse a JSON request body; anything but application/json is refused."""
    if _media_type(content_type) != JSON:
        raise BadRequest(f"unsupported content type {content_type!r}; send {JSON}")
    if isinstance(body, bytes | bytearray):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest("request body is not UTF-8") from exc
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # json's parser gives up on very deep nesting
        raise BadRequest("request JSON is nested too deeply") from exc
    except ValueError as exc:  # an integer literal beyond Python's int digit limit (4300 digits)
        raise BadRequest(f"request body has an unreadable number: {str(exc).split(';')[0]}") from exc
    _validate(data)
    return data


def _show(value: Any, limit: int = 60) -> str:
    """A client value for an error message: bounded, and safe on deep nesting or an int too long to print."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _id_text(value: Any) -> str | None:
    """An id sent as a string or an int, as text; None for any other type or an int too long to print."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    try:
        return str(value)
    except ValueError:  # beyond Python's int->str digit limit
        return None


def _id_list(req: dict[str, Any], key: str) -> list[str] | None:
    value = req.get(key)
    if value is None:
        return None
    if isinstance(value, list) and len(value) > MAX_IDS:
        raise BadRequest(f"'{key}' has more than {MAX_IDS} ids")
    texts = [_id_text(v) for v in value] if isinstance(value, list) else [None]
    ids = [t for t in texts if t is not None]
    if len(ids) != len(texts):
        raise BadRequest(f"'{key}' must be a list of product id strings")
    return ids


def _single(req: Any, model: Bundle | None = None) -> dict[str, Any]:
    """Validated keyword arguments for Bundle.recommend (``model`` gives the exploration default)."""
    if not isinstance(req, dict):
        raise BadRequest("each request must be a JSON object")
    product_id = req.get("product_id")
    if product_id is not None:
        product_id = _id_text(product_id)
        if product_id is None or product_id.strip() == "":
            raise BadRequest("'product_id' must be a non-empty string")
        product_id = product_id.strip()
    cart = _id_list(req, "cart_product_ids")
    if cart is not None and not cart:
        raise BadRequest("'cart_product_ids' must not be empty")
    strategy = req.get("strategy", "auto")
    if strategy not in STRATEGIES:
        raise BadRequest(f"'strategy' must be one of {list(STRATEGIES)}, got {_show(strategy)}")
    if sum(x is not None for x in (product_id, cart)) + (strategy == "trending") > 1:
        raise BadRequest("send at most one of 'product_id', 'cart_product_ids' and 'strategy': 'trending'")
    item_based = product_id is not None or cart is not None or strategy == "trending"
    user_id = _id_text(req.get("user_id"))
    if req.get("user_id") is None and item_based:
        user_id = None
    elif user_id is None or user_id.strip() == "":
        raise BadRequest("'user_id' is required (a non-empty string)")
    k = req.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise BadRequest(f"'k' must be a positive integer, got {_show(k)}")
    if k > MAX_K:
        raise BadRequest(f"'k' must be at most {MAX_K}")
    exclude = req.get("exclude", "purchased")
    if exclude not in EXCLUDE_MODES:
        raise BadRequest(f"'exclude' must be one of {list(EXCLUDE_MODES)}, got {_show(exclude)}")
    category = req.get("category")
    if category is not None and not isinstance(category, str):
        raise BadRequest("'category' must be a string")
    try:
        rules = {
            "filters": parse_filters(req.get("filters")),
            "promotion": parse_promotion(req.get("promotion"), k),
            "exploration_share": parse_exploration(
                req.get("exploration"), model.exploration if model is not None else _NO_EXPLORATION
            ),
        }
    except RuleError as exc:
        raise BadRequest(str(exc)) from exc
    return {
        "user_id": user_id.strip() if user_id is not None else None,
        "k": k,
        "exclude": exclude,
        "category": category,
        "recent_product_ids": _id_list(req, "recent_product_ids"),
        "exclude_product_ids": _id_list(req, "exclude_product_ids"),
        "product_id": product_id,
        "cart_product_ids": cart,
        "trending": strategy == "trending",
        **rules,
    }


def _validate(data: Any) -> None:
    if isinstance(data, dict) and "instances" in data:
        instances = data["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadRequest("'instances' must be a non-empty list of request objects")
        if len(instances) > MAX_BATCH:
            raise BadRequest(f"at most {MAX_BATCH} instances per request")
        for n, inst in enumerate(instances):
            try:
                _single(inst)
            except BadRequest as exc:
                raise BadRequest(f"instances[{n}]: {exc}") from exc
    else:
        _single(data)


def _served(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer with a fresh ``recommendation_id`` (issue 14): the shop echoes it on the clickstream events
    of what it showed, so a click, cart or purchase can be attributed to this list, its positions, strategy
    and model version (the endpoint's data capture records the response with it)."""
    return {**answer, "recommendation_id": uuid.uuid4().hex}


#: The id a forgotten shopper is looked up as: in no model's id map, so they get a new shopper's answer.
FORGOTTEN = "\x00forgotten"


def _recommend(model: Bundle, request: dict[str, Any]) -> dict[str, Any]:
    """``model.recommend``, with a shopper on the erasure suppression list (recsys_core/suppression.py) looked
    up as nobody: no history, factors or segment of theirs is used. The answer still names the id sent."""
    suppression = suppression_list()
    if suppression is not None and suppression.forgotten(request["user_id"]):
        return {**model.recommend(**{**request, "user_id": FORGOTTEN}), "user_id": request["user_id"]}
    return model.recommend(**request)


def predict_fn(data: dict[str, Any], model: Bundle) -> dict[str, Any]:
    """One response object, or ``{"predictions": [...]}`` for an ``instances`` batch; each carries its own
    ``recommendation_id``."""
    _validate(data)
    if "instances" in data:
        return {"predictions": [_served(_recommend(model, _single(inst, model))) for inst in data["instances"]]}
    return _served(_recommend(model, _single(data, model)))


def output_fn(prediction: dict[str, Any], accept: str | None = JSON) -> str:
    """Serialise to JSON (the only representation offered)."""
    media = _media_type(accept)
    if media not in ("", JSON, "*/*", "application/*"):
        raise BadRequest(f"unsupported accept type {accept!r}; use {JSON}")
    return json.dumps(prediction)
