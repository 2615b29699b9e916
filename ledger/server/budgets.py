"""Budget endpoints of one project (``ledger.api.budgets``): create or replace a budget
(``PUT /api/v1/budgets/{name}``), list them, remove one, and each one's state this
period (``GET /api/v1/budgets/status``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from ledger.api import operations as ops
from ledger.api.budgets import (
    DEFAULT_THRESHOLDS,
    MAX_SECRET,
    MAX_THRESHOLD,
    MAX_THRESHOLDS,
    MAX_URL,
)
from ledger.server.logs import Tenant, json_response, route, service

router = APIRouter(tags=["budgets"])
Name = Annotated[str, Path(min_length=1, max_length=64,
                           pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class BudgetIn(BaseModel):
    """A budget: ``amount`` USD (decimal text, exact to the nano-dollar) per calendar
    ``period`` in the IANA zone ``tz`` (weeks start on Monday); an alert at each of
    ``thresholds`` (percent of the amount) sent to ``webhook``, signed with
    ``webhook_secret`` (made by the ledger when not given); ``hard``: refuse the
    project's logs (402 `budget_exceeded`) once 100% is spent."""

    model_config = ConfigDict(extra="forbid")

    amount: str | StrictInt | StrictFloat = Field(
        description="USD per period, decimal text (e.g. `\"10\"`, `\"2.50\"`); more than 0.")
    period: Literal["day", "week", "month"] = Field(
        description="The calendar period (weeks start on Monday).")
    tz: str = Field(default="UTC", max_length=64, description="An IANA time zone.")
    thresholds: list[Annotated[StrictInt, Field(ge=1, le=MAX_THRESHOLD)]] = Field(
        default=list(DEFAULT_THRESHOLDS), min_length=1, max_length=MAX_THRESHOLDS,
        description="Percentages of the amount, 1 to 1000.")
    webhook: str | None = Field(default=None, max_length=MAX_URL,
                                description="An http(s) URL alerts are POSTed to.")
    webhook_secret: str | None = Field(default=None, max_length=MAX_SECRET, description=(
        "The HMAC-SHA256 key of the webhook's signature (16 to 256 printable ASCII "
        "characters); when not given, the ledger makes one and answers it once."))
    hard: StrictBool = False


@route(router, ops.SET_BUDGET)
def set_budget(name: Name, body: BudgetIn, tenant: Tenant, request: Request) -> Response:
    """Create or replace the budget `name` of the project: the answer is the budget, with
    `webhook_secret` once when the ledger made it (store it: it is not shown again)."""
    return json_response(service(request).set_budget(
        tenant, name, amount=body.amount, period=body.period, tz=body.tz,
        thresholds=body.thresholds, webhook=body.webhook,
        webhook_secret=body.webhook_secret, hard=body.hard))


@route(router, ops.LIST_BUDGETS)
def list_budgets(tenant: Tenant, request: Request) -> Response:
    """`{budgets: [...]}`: every budget of the project (never a webhook secret)."""
    return json_response(service(request).list_budgets(tenant))


@route(router, ops.BUDGET_STATUS)
def budget_status(tenant: Tenant, request: Request) -> Response:
    """Each budget now: `current_period` {start, end, tz}, `spent` (decimal text),
    `spent_nanos`, `percent`, the thresholds `crossed` this period, `refusing` (a hard
    budget spent), and `last_alert` (its delivery state)."""
    return json_response(service(request).budget_status(tenant))


@route(router, ops.REMOVE_BUDGET)
def remove_budget(name: Name, tenant: Tenant, request: Request) -> Response:
    """Remove the budget `name` (alerts already recorded are kept; one still undelivered
    is not sent)."""
    return json_response(service(request).remove_budget(tenant, name))
