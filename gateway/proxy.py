"""A small reverse proxy that serves the one base URL in local runs.

``python -m gateway.proxy --port 8000`` with ``GATEWAY_<SERVICE>_URL`` naming each
service's address. Streams bodies both ways, adds ``X-Forwarded-*``, answers unknown
paths with a problem+json 404 and a dead upstream with 502.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator
from http import HTTPStatus

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from yarl import URL

from .routes import SERVICES, service_for

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
#: aiohttp has already decoded a compressed request body: forward it without that header.
REQUEST_DROPPED = HOP_BY_HOP | {"content-encoding"}
UPSTREAMS = web.AppKey("upstreams", dict)
CLIENT = web.AppKey("client", aiohttp.ClientSession)


def _problem(status: int, detail: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(
            {
                "type": "about:blank",
                "title": HTTPStatus(status).phrase,
                "status": status,
                "detail": detail,
            }
        ),
        content_type="application/problem+json",
    )


async def proxy(request: web.Request) -> web.StreamResponse:
    if request.path == "/healthz":
        return web.json_response({"status": "ok"})
    service = service_for(request.path)
    if service is None:
        return _problem(404, "No such resource.")
    upstream = request.app[UPSTREAMS][service]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in REQUEST_DROPPED}
    peer = request.remote or ""
    headers["X-Forwarded-For"] = ", ".join(filter(None, [request.headers.get("X-Forwarded-For"), peer]))
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    body = request.content if request.body_exists else None
    try:
        async with request.app[CLIENT].request(
            request.method,
            # raw: forwarded as received; decoding would turn %3F, %23 or %2F into syntax
            URL(upstream + request.rel_url.raw_path_qs, encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
            auto_decompress=False,
        ) as upstream_response:
            response = web.StreamResponse(status=upstream_response.status, reason=upstream_response.reason)
            for key, value in upstream_response.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_chunked(64 * 1024):
                await response.write(chunk)
            await response.write_eof()
            return response
    except aiohttp.ClientConnectionError:
        if body is not None and isinstance(request.content.exception(), RequestPayloadError):
            return _problem(400, "The request body could not be read (bad Content-Encoding or framing).")
        return _problem(502, f"The {service} service is unreachable.")


async def _client(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
    app[CLIENT] = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))
    yield
    await app[CLIENT].close()


def create_app(upstreams: dict[str, str]) -> web.Application:
    missing = [s for s in SERVICES if s not in upstreams]
    if missing:
        raise ValueError(f"no upstream for {', '.join(missing)}")
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[UPSTREAMS] = {k: v.rstrip("/") for k, v in upstreams.items()}
    app.cleanup_ctx.append(_client)
    # (?s): "." must match a newline too, or a path with %0A would get aiohttp's plain 404
    app.router.add_route("*", "/{tail:(?s:.*)}", proxy)
    return app


DEFAULT_PORTS = {"checkout": 8001, "billing": 8002, "notifications": 8003, "crm_sync": 8004}


def upstreams_from_env() -> dict[str, str]:
    return {s: os.environ.get(f"GATEWAY_{s.upper()}_URL", f"http://127.0.0.1:{DEFAULT_PORTS[s]}") for s in SERVICES}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.proxy")
    parser.add_argument("--host", default=os.environ.get("GATEWAY_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", "8000")))
    args = parser.parse_args(argv)
    web.run_app(create_app(upstreams_from_env()), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
