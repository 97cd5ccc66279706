"""A search's query string (``q``, ``like``, filters, ``k``): one pydantic model, validated in one call.

The search routes read the query string through ``SearchQuery.of(request)`` rather than one FastAPI
``Query`` parameter each: FastAPI resolves declared parameters one by one in Python (aliases, type
introspection, a validation per field) on every request, which was a third of the web app's own CPU
per search (bench.web's profile), while the model is checked by pydantic-core in a single call with
the same rules and the same messages. The OpenAPI document gets the parameters from the same model
(``OPENAPI``), so what is documented is what is checked.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.clip_ids import VIDEO_ID
from services.common.errors import InvalidInput
from vidsearch.common.v1 import common_pb2
from vidsearch.gateway.v1 import gateway_pb2

MAX_K = 200
#: With an air-date range the gateway cannot filter on, this many times k hits are asked for and
#: filtered here (the index filters metadata by exact value only).
DATE_OVERFETCH = 8


@dataclass(frozen=True)
class SearchParams:
    """The filters and options every search takes, checked."""

    k: int
    tags: tuple[str, ...]
    programme: str
    date_from: str
    date_to: str
    collapse: bool
    video_ids: tuple[str, ...]

    def request(self, **query: Any) -> gateway_pb2.SearchRequest:
        metadata = {"programme": self.programme} if self.programme else {}
        ranged = bool(self.date_from or self.date_to)
        return gateway_pb2.SearchRequest(
            top_k=min(1000, self.k * DATE_OVERFETCH) if ranged else self.k, collapse_by_video=self.collapse,
            filter=common_pb2.SearchFilter(tags=list(self.tags), metadata=metadata, video_ids=list(self.video_ids)),
            **query)

    def keep(self, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.date_from or self.date_to:
            hi = self.date_to or "9999-12-31"
            hits = [h for h in hits if h["air_date"] and self.date_from <= h["air_date"] <= hi]
        return hits[:self.k]


def parse_date(name: str, value: str) -> str:
    if not value:
        return ""
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidInput(f"{name}={value[:40]!r} is not a date in YYYY-MM-DD form") from None


def split_list(value: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in value.split(",") if t.strip())


class SearchQuery(BaseModel):
    """Every parameter a search takes in its query string; unknown ones are ignored, as FastAPI does."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    q: Annotated[str, Field(max_length=1000, description="a sentence in Korean or English")] = ""
    like: Annotated[str, Field(max_length=200, description="more like this clip id")] = ""
    lang: Annotated[str, Field(max_length=8, pattern=r"^[a-zA-Z-]*$", description="language hint: ko, en")] = ""
    k: Annotated[int, Field(ge=1, le=MAX_K, description="number of hits")] = 20
    tags: Annotated[str, Field(max_length=1000, description="comma-separated; hits carry all of them")] = ""
    programme: Annotated[str, Field(max_length=200, description="programme, exactly")] = ""
    date_from: Annotated[str, Field(alias="from", max_length=10, description="air date, YYYY-MM-DD")] = ""
    date_to: Annotated[str, Field(alias="to", max_length=10, description="air date, YYYY-MM-DD")] = ""
    collapse: Annotated[bool, Field(description="best clip per video only")] = False
    video: Annotated[str, Field(max_length=4000, description="comma-separated video ids")] = ""

    @classmethod
    def of(cls, request: Request) -> SearchQuery:
        """The request's query string checked; a bad one raises FastAPI's own validation error (a 400)."""
        try:
            # A repeated name counts once, its last value, as with FastAPI's scalar query parameters.
            return cls.model_validate(dict(request.query_params))
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]) from None

    def params(self) -> SearchParams:
        """The filters, with the checks a field's type cannot say (dates, date order, video ids)."""
        video_ids = split_list(self.video)
        for v in video_ids:
            if not VIDEO_ID.fullmatch(v):
                raise InvalidInput(f"video id {v[:140]!r} is malformed")
        params = SearchParams(self.k, split_list(self.tags), self.programme.strip(),
                              parse_date("from", self.date_from), parse_date("to", self.date_to), self.collapse,
                              video_ids)
        if params.date_from and params.date_to and params.date_from > params.date_to:
            raise InvalidInput(f"from ({params.date_from}) is after to ({params.date_to})")
        return params


def _openapi(only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``openapi_extra`` for a route: the model's fields as OpenAPI query parameters."""
    schema = SearchQuery.model_json_schema(by_alias=True)
    parameters = []
    for name, prop in schema["properties"].items():
        if only is not None and name not in only:
            continue
        prop = dict(prop)
        description = prop.pop("description", "")
        prop.pop("title", None)
        parameters.append({"name": name, "in": "query", "required": False, "description": description,
                           "schema": prop})
    return {"parameters": parameters}


#: The text or clip search routes (GET /search, /search.csv, /search.edl): every field.
OPENAPI = _openapi()
#: The file search (POST /search): the filters and k; its query is the uploaded file.
OPENAPI_FILTERS = _openapi(("k", "tags", "programme", "from", "to", "collapse", "video"))
