"""HTTP: ``GET /openapi.json`` — the OpenAPI 3.1 document of the whole base URL.

The document is generated from every service's route table (``devtools/openapi.py``,
``make openapi``) and committed beside this module; checkout serves it because the
router sends ``/openapi.json`` here (``gateway/routes.py``). Tests keep it current.
"""

from __future__ import annotations

import functools
from pathlib import Path

from aiohttp import web

from shared.web.openapi import operation

routes = web.RouteTableDef()

DOCUMENT = Path(__file__).resolve().parent / "openapi.json"


@functools.cache
def _document() -> bytes:
    return DOCUMENT.read_bytes()


@routes.get("/openapi.json")
@operation("The OpenAPI 3.1 document of this API", response={"type": "object"})
async def openapi_document(_request: web.Request) -> web.Response:
    return web.Response(
        body=_document(),
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )
