"""What the route handlers share: reading a request, converting it for the engine, Qdrant's input errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pydantic
from starlette.requests import Request

from devenv.qdrant_dev.engine import Engine
from devenv.qdrant_dev.errors import ApiError, wrong_input

if TYPE_CHECKING:
    from devenv.qdrant_dev.app import DevState


class RouteHandlers:
    """The base of the handler groups QdrantDevApp is made of; QdrantDevApp sets these attributes."""

    engine: Engine
    state: DevState
    operation_id: int

    def _update_result(self, request: Request) -> dict[str, Any]:
        self.operation_id += 1
        status = "completed" if _flag(request, "wait") else "acknowledged"
        return {"operation_id": self.operation_id, "status": status}


async def _body(request: Request, model: Any) -> Any:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"Json deserialize error: {exc}") from exc
    try:
        if isinstance(model, pydantic.TypeAdapter):
            return model.validate_python(data)
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise ApiError(400, f"Json deserialize error: {problems}") from exc


def _flag(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    return default if value is None else value.lower() in ("1", "true", "yes")


def _wrap(fn: Callable[..., Any], *args: Any) -> Any:
    """Request conversion: what the engine cannot express is a 400, like Qdrant's own input errors."""
    try:
        return fn(*args)
    except ValueError as exc:
        raise wrong_input(str(exc)) from exc


_MISSING_POINT = re.compile(r"^No point with id (\S+?)(?: found)?$")


def _engine_call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except ApiError:
        raise
    except Exception as exc:  # qdrant-edge raises plain Exception with Qdrant's own messages
        missing = _MISSING_POINT.match(str(exc))
        if missing:
            raise ApiError(404, f"Not found: No point with id {missing.group(1)} found") from exc
        raise wrong_input(str(exc)) from exc


def _check_name(name: str) -> None:
    for bad in ("/", "\\", "\0", ".."):
        if bad in name or not name.strip():
            raise ApiError(
                422, f'Validation error in path parameters: [name: collection name cannot contain "{bad}" char]'
            )
