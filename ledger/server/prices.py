"""Price override endpoints of one project (``ledger.api.prices``): list the rows, add or
replace rows (``POST /api/v1/prices``), remove one, and explain a price
(``GET /api/v1/prices/show``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ledger.api import operations as ops
from ledger.model.event import MAX_SAFE_INT
from ledger.model.price_overrides import MAX_ROWS
from ledger.server.logs import Tenant, When, json_response, route, service

router = APIRouter(tags=["prices"])
RowId = Annotated[str, Path(min_length=1, max_length=64)]
Tokens = Annotated[int | None, Query(ge=0, le=MAX_SAFE_INT)]


class PricesIn(BaseModel):
    """Rows to add (each replacing the stored row of the same provider, model and
    `since`), or with `replace` the project's whole table. A row: `provider` (or `*`),
    `model` (a name, a glob like `gpt-4o*`, or `*`), `since` (YYYY-MM-DD, UTC, or null),
    rates `input`, `cached_input`, `cache_write`, `output` in USD per million tokens and
    `request` in USD per call, and/or `discount` in percent: every number as decimal
    text (docs/formats.md, "Price overrides")."""

    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, Any]] = Field(max_length=MAX_ROWS)
    replace: StrictBool = False


@route(router, ops.LIST_PRICES)
def list_prices(tenant: Tenant, request: Request) -> Response:
    """`{project, version, rows: [...]}`: the project's override rows, each with its `id`
    (the hash its events' `price_id` names)."""
    return json_response(service(request).list_prices(tenant))


@route(router, ops.SET_PRICES)
def set_prices(body: PricesIn, tenant: Tenant, request: Request) -> Response:
    """Add or replace override rows; a bad row or two rows from the same day for the same
    provider and model are refused (422) and nothing changes. Events already stored keep
    their price."""
    return json_response(service(request).set_prices(tenant, body.rows, body.replace))


@route(router, ops.SHOW_PRICE)
def show_price(tenant: Tenant, request: Request,
               model: Annotated[str | None, Query(max_length=200)] = None,
               provider: Annotated[str | None, Query(max_length=200)] = None,
               at: When = None, input_tokens: Tokens = None,
               cached_input_tokens: Tokens = None, cache_write_tokens: Tokens = None,
               output_tokens: Tokens = None, reasoning_tokens: Tokens = None,
               log_id: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    """Which row prices a call of `model` at `at` (override or packaged), its rates and
    dates, the `price_id`, and the exact cost of the given token counts with the
    arithmetic; with `log_id`, the same for a stored event and whether it `matches`."""
    return json_response(service(request).show_price(
        tenant, model=model, provider=provider, at=at, input_tokens=input_tokens,
        cached_input_tokens=cached_input_tokens, cache_write_tokens=cache_write_tokens,
        output_tokens=output_tokens, reasoning_tokens=reasoning_tokens, log_id=log_id))


@route(router, ops.REMOVE_PRICE)
def remove_price(row_id: RowId, tenant: Tenant, request: Request) -> Response:
    """Remove the override row `row_id`. Events already stored keep their price."""
    return json_response(service(request).remove_price(tenant, row_id))
