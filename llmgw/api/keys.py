"""Managed keys: ``POST /api/v1/keys`` (the key shown once, stored as its SHA-256),
``GET /api/v1/keys``, ``GET``/``PATCH``/``DELETE /api/v1/keys/{name}``.

A change is effective at once on this replica and within a second on the others
(``auth.managed``). A name taken by a configured or a managed key is a 409.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmgw.api.guard import require_admin
from llmgw.auth.managed import digest_of
from llmgw.config.schema import LimitSpec
from llmgw.config.store import BudgetSpec
from llmgw.errors import Conflict, InvalidRequest, NotFound
from llmgw.server.appkeys import DATABASE, KEYRING, STORE
from llmgw.store import keys as queries
from llmgw.store.engine import Database

MAX_BODY = 64 * 1024


class KeyChange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str] | None = None
    limits: LimitSpec | None = None
    budget: BudgetSpec | None = None
    expires_at: float | str | None = None  # epoch seconds or ISO 8601
    cache_refresh: bool = False

    @field_validator("expires_at")
    @classmethod
    def _moment(cls, value: float | str | None) -> float | None:
        if value is None or isinstance(value, float | int):
            return value
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be epoch seconds or an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()


class KeyCreation(KeyChange):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@:-]*$")


def _db(request: web.Request) -> Database:
    require_admin(request)
    db = request.app[DATABASE]
    if db is None:
        raise NotFound("Managed keys need a database (database.url)")
    return db


async def _parse(request: web.Request, model: type[KeyChange]) -> tuple[KeyChange, set[str]]:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise InvalidRequest("The request body is too large")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object")
    try:
        return model.model_validate(data), set(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequest(f"{where}: {first['msg']}", param=where) from None


def _stored(change: KeyChange, given: set[str]) -> dict[str, Any]:
    dumped = change.model_dump(exclude_none=False)
    out = {name: dumped[name] for name in queries.FIELDS if name in given}
    for name in ("limits", "budget"):
        if out.get(name) is not None:
            out[name] = {k: v for k, v in out[name].items() if v is not None}
    return out


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "models": row.get("models"),
        "limits": row.get("limits"),
        "budget": row.get("budget"),
        "expires_at": row.get("expires_at"),
        "cache_refresh": bool(row.get("cache_refresh")),
        "created_at": row.get("created_at"),
        "updated_at": row.get("updated_at"),
        "managed": True,
    }


def _json(document: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type="application/json")


async def create_key(request: web.Request) -> web.Response:
    db = _db(request)
    creation, given = await _parse(request, KeyCreation)
    assert isinstance(creation, KeyCreation)
    name = creation.name
    if any(key.name == name for key in request.app[STORE].current.config.auth.keys):
        raise Conflict(f"The name '{name}' belongs to a key in the config file", param="name")
    key = "sk-llmgw-" + secrets.token_urlsafe(32)
    try:
        row = await queries.create(
            db, name, digest_of(key).hex(), _stored(creation, given | {"cache_refresh"})
        )
    except queries.NameTaken:
        raise Conflict(f"A key named '{name}' exists already", param="name") from None
    await request.app[KEYRING].managed.load(db)  # usable at once here
    return _json({**_shown(row), "key": key}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    db = _db(request)
    managed = [_shown(row) for row in await queries.all_keys(db)]
    configured = [
        {"name": key.name, "managed": False} for key in request.app[STORE].current.config.auth.keys
    ]
    return _json({"object": "list", "data": configured + managed})


async def get_key(request: web.Request) -> web.Response:
    db = _db(request)
    row = await queries.get(db, request.match_info["name"])
    if row is None:
        raise NotFound(f"No managed key named '{request.match_info['name']}'")
    return _json(_shown(row))


async def change_key(request: web.Request) -> web.Response:
    db = _db(request)
    change, given = await _parse(request, KeyChange)
    row = await queries.change(db, request.match_info["name"], _stored(change, given))
    if row is None:
        raise NotFound(f"No managed key named '{request.match_info['name']}'")
    await request.app[KEYRING].managed.load(db)
    return _json(_shown(row))


async def delete_key(request: web.Request) -> web.Response:
    db = _db(request)
    if not await queries.remove(db, request.match_info["name"]):
        raise NotFound(f"No managed key named '{request.match_info['name']}'")
    await request.app[KEYRING].managed.load(db)
    return web.Response(status=204)
