"""The JSON API (/v1/...): one function per path over the current View. The pages
render the same dicts, so a page never shows a number the API does not. The
paths are described in openapi.json beside this module (a test holds the two
equal)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import JalkalError
from ..reports.periods import LEVELS, PERIODS, periods
from . import model
from .model import View

OPENAPI = Path(__file__).with_name("openapi.json")
FILTERS = ("state", "district", "block", "status", "band")


class NotFound(JalkalError):
    """No such village (or other thing) in the View: 404."""


class BadRequest(JalkalError):
    """A query parameter out of its range: 400."""


def _one(q: dict[str, list[str]], name: str) -> str | None:
    v = q.get(name)
    return v[0] if v else None


def _head(view: View) -> dict[str, Any]:
    return {"as_of": model.iso(view.now), "frames": view.count}


def summary(view: View, q: dict[str, list[str]]) -> dict[str, Any]:
    state, district = _one(q, "state"), _one(q, "district")
    if district is not None and state is None:
        raise BadRequest("district needs state")
    return {**_head(view), **model.summary(view, state, district)}


def villages(view: View, q: dict[str, list[str]]) -> dict[str, Any]:
    where = {k: _one(q, k) for k in FILTERS}
    if where["status"] not in (None, "", *model.STATUSES):
        raise BadRequest(f"status must be one of {', '.join(model.STATUSES)}")
    if where["band"] not in (None, "", *model.BANDS):
        raise BadRequest(f"band must be one of {', '.join(model.BANDS)}")
    return {**_head(view), "filters": where, "villages": model.select(view, **where)}


def village(view: View, vid: str) -> dict[str, Any]:
    v = view.by_id.get(vid)
    if v is None:
        raise NotFound(f"no village {vid}")
    devices = [d for d in view.devices if d["device"] in v["devices"]]
    uploads = [
        {
            k: d[k]
            for k in (
                "device",
                "last_frame",
                "last_upload",
                "uploads_day",
                "signal_csq",
                "via",
                "frames",
            )
        }
        for d in devices
    ]
    open_alerts = [
        a for a in view.alerts if a["active"] and a["device"] in v["devices"]
    ]
    return {
        **_head(view),
        "village": v,
        "events_today": view.events.get(vid, []),
        "uploads": uploads,
        "alerts": open_alerts,
    }


def village_days(view: View, vid: str) -> dict[str, Any]:
    v = view.by_id.get(vid)
    if v is None:
        raise NotFound(f"no village {vid}")
    return {
        **_head(view),
        "village": v["village"],
        "id": vid,
        "days": view.days.get(vid, []),
    }


def period_rows(view: View, q: dict[str, list[str]]) -> dict[str, Any]:
    period, by = _one(q, "period") or "month", _one(q, "by") or "village"
    if period not in PERIODS:
        raise BadRequest(f"period must be one of {', '.join(PERIODS)}")
    if by not in LEVELS:
        raise BadRequest(f"by must be one of {', '.join(LEVELS)}")
    rows: list[dict[str, Any]] = []
    if view.report_days is not None and view.report_days.num_rows:
        rows = model.rows_of(periods(view.report_days, period, by))
    return {**_head(view), "period": period, "by": by, "periods": rows}


def alert_rows(view: View, q: dict[str, list[str]]) -> dict[str, Any]:
    active = _one(q, "active")
    rows = view.alerts
    if active in ("1", "true"):
        rows = [a for a in rows if a["active"]]
    return {**_head(view), "alerts": rows}


def devices(view: View, q: dict[str, list[str]]) -> dict[str, Any]:
    return {**_head(view), "devices": view.devices}


# path pattern -> (function, admin only); {id}: a village id
Handler = Callable[..., dict[str, Any]]
ROUTES: dict[str, tuple[Handler, bool]] = {
    "/v1/summary": (summary, False),
    "/v1/villages": (villages, False),
    "/v1/villages/{id}": (village, False),
    "/v1/villages/{id}/days": (village_days, False),
    "/v1/periods": (period_rows, False),
    "/v1/alerts": (alert_rows, False),
    "/v1/devices": (devices, True),
}
OPENAPI_PATH = "/v1/openapi.json"


def match(path: str) -> tuple[str, str | None] | None:
    """(route pattern, village id or None) of an API path; None: not an API path."""
    if path in ROUTES:
        return path, None
    parts = path.split("/")
    if len(parts) in (4, 5) and parts[:3] == ["", "v1", "villages"] and parts[3]:
        pattern = "/v1/villages/{id}" + ("/days" if len(parts) == 5 else "")
        if len(parts) == 5 and parts[4] != "days":
            return None
        return pattern, parts[3]
    return None


def call(view: View, pattern: str, vid: str | None, q: dict[str, list[str]]) -> Any:
    fn = ROUTES[pattern][0]
    return fn(view, vid) if vid is not None else fn(view, q)
