"""``python -m services.<name> serve|worker|relay|migrate`` for every service.

Imports are deferred so that ``worker`` can set up Prometheus' multi-process directory
before anything creates a metric.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    schema: str
    settings: Callable[[], Any]  # () -> settings (reads the environment)
    create_app: str | None  # "module:function" taking settings
    worker: str | None  # "module:function" taking settings; runs until SIGTERM
    #: "module:function" taking settings: the service's time-driven loop (billing only).
    scheduler: str | None = None


def _load(path: str) -> Callable[..., Any]:
    import importlib

    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def main(spec: ServiceSpec, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{spec.name}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--port", type=int, default=None)
    worker = sub.add_parser("worker", help="run a dramatiq worker for this service's queue")
    worker.add_argument("--metrics-port", type=int, default=None)
    relay = sub.add_parser("relay", help="run the outbox relay")
    relay.add_argument("--metrics-port", type=int, default=None)
    sub.add_parser("migrate", help="apply this service's schema migrations")
    if spec.scheduler:
        scheduler = sub.add_parser("scheduler", help="run the time-driven loop (due charges, retries, reminders)")
        scheduler.add_argument("--metrics-port", type=int, default=None)
    args = parser.parse_args(argv)

    if args.command == "worker":
        from .worker import prepare_metrics_dir

        prepare_metrics_dir(spec.name, "worker")

    from .logging import configure_logging

    settings = spec.settings()
    overrides: dict[str, Any] = {}
    if getattr(args, "port", None) is not None:
        overrides["http_port"] = args.port
    if args.command == "worker" and args.metrics_port is not None:
        overrides["worker_metrics_port"] = args.metrics_port
    if args.command == "relay" and args.metrics_port is not None:
        overrides["relay_metrics_port"] = args.metrics_port
    if args.command == "scheduler" and args.metrics_port is not None:
        overrides["scheduler_metrics_port"] = args.metrics_port
    if overrides:
        settings = settings.model_copy(update=overrides)
    configure_logging(
        service=f"{spec.name}-{args.command}", level=settings.common.log_level, fmt=settings.common.log_format
    )

    if args.command == "serve":
        _serve(spec, settings)
    elif args.command == "worker":
        _load(spec.worker)(settings)
    elif args.command == "relay":
        from .worker import run_relay

        run_relay(settings, service=spec.name, schema=spec.schema)
    elif args.command == "scheduler":
        _load(spec.scheduler)(settings)
    elif args.command == "migrate":
        from .migrations import upgrade

        upgrade(spec.name, spec.schema, settings.database_owner_url)


def _serve(spec: ServiceSpec, settings: Any) -> None:
    import asyncio

    from aiohttp import web

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is optional
        pass
    app = _load(spec.create_app)(settings)
    web.run_app(app, host=settings.http_host, port=settings.http_port, access_log=None, print=None, shutdown_timeout=10)
