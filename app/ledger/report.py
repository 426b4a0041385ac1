"""The cost report page: static HTML, CSS and JS (Chart.js vendored under static/vendor),
which draw their charts from ``GET /v1/stats`` with the reader's own API key. The page
holds no data and needs no key to load; nothing is fetched from outside at run time."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.kit.json_input import StrictJSONRoute

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter(tags=["report"], route_class=StrictJSONRoute)
static_files = StaticFiles(directory=STATIC)


@router.get("/report", include_in_schema=False)
def report() -> FileResponse:
    """The cost report (open ``/report#key=<api key>`` or type the key in)."""
    return FileResponse(STATIC / "report.html", media_type="text/html")
