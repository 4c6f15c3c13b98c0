"""The whole system on one machine: infrastructure, every service process, the router.

Used by ``make run`` (``python -m devtools.stack run``) and by the end-to-end and fault
tests (which start their own stack on free ports, in their own database and Redis
namespace, and kill and restart its processes).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import infra

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("checkout", "billing", "notifications", "crm_sync")
ENV_PREFIX = {"checkout": "CHECKOUT", "billing": "BILLING", "notifications": "NOTIFICATIONS", "crm_sync": "CRM_SYNC"}


@dataclass
class Ports:
    gateway: int = 8000
    checkout: int = 8001
    billing: int = 8002
    notifications: int = 8003
    crm_sync: int = 8004
    test_processor: int = 8420
    smtp: int = 1025
    #: worker/relay ops servers: base + offsets (0 = no ops servers)
    ops_base: int = 9000

    @classmethod
    def from_env(cls) -> Ports:
        """``COMMERCE_RUN_PORT_OFFSET`` shifts every default port (two stacks on one machine)."""
        offset = int(os.environ.get("COMMERCE_RUN_PORT_OFFSET", "0"))
        defaults = cls()
        return cls(**{name: value + offset for name, value in vars(defaults).items()})

    @classmethod
    def free(cls) -> Ports:
        return cls(
            gateway=infra.free_port(),
            checkout=infra.free_port(),
            billing=infra.free_port(),
            notifications=infra.free_port(),
            crm_sync=infra.free_port(),
            test_processor=infra.free_port(),
            smtp=infra.free_port(),
            ops_base=0,
        )

    def service(self, name: str) -> int:
        return getattr(self, name)


@dataclass
class StackConfig:
    run_dir: Path = field(default_factory=lambda: Path(os.environ.get("COMMERCE_RUN_DIR", ROOT / ".run")))
    database: str = field(default_factory=lambda: os.environ.get("COMMERCE_DATABASE_NAME", "commerce"))
    pg_admin_url: str = field(
        default_factory=lambda: os.environ.get(
            "COMMERCE_BOOTSTRAP_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        )
    )
    redis_url: str = field(default_factory=lambda: os.environ.get("COMMERCE_REDIS_URL", "redis://127.0.0.1:6379/0"))
    namespace: str = field(default_factory=lambda: os.environ.get("COMMERCE_BROKER_NAMESPACE", "commerce"))
    ports: Ports = field(default_factory=Ports.from_env)
    #: Ports of the PostgreSQL / Redis this stack starts when none is reachable.
    private_pg_port: int = field(default_factory=lambda: int(os.environ.get("COMMERCE_PRIVATE_PG_PORT", "55432")))
    private_redis_port: int = field(default_factory=lambda: int(os.environ.get("COMMERCE_PRIVATE_REDIS_PORT", "56379")))
    workers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERVICES, 1))
    console: bool = False
    log_level: str = "INFO"
    environment: str = "development"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def mail_dir(self) -> Path:
        return self.run_dir / "mail"


_CONSOLE_LOCK = threading.RLock()


def say(text: str = "") -> None:
    """One line (or several) on the terminal, never interleaved with process output."""
    with _CONSOLE_LOCK:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


class Process:
    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        console: bool,
        console_filter: Callable[[str], str | None] | None = None,
    ):
        self.name, self.argv, self.env, self.log_path, self.console = name, argv, env, log_path, console
        #: With ``console``: maps each output line to what the terminal shows (None: nothing).
        self.console_filter = console_filter
        self.popen: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.popen = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._pump, name=f"log-{self.name}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        with open(self.log_path, "ab") as log:
            for line in self.popen.stdout:
                log.write(line)
                log.flush()
                if self.console:
                    text: str | None = line.decode(errors="replace").rstrip("\r\n")
                    if self.console_filter is not None:
                        text = self.console_filter(text)
                    if text is not None:
                        say(f"{self.name:>22} | {text}")

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.kill(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(5)

    def kill(self) -> None:
        if self.alive():
            try:  # its own session (start_new_session): the group holds anything it started
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)


class Interrupted(Exception):
    """Start-up was abandoned because a stop was requested (Ctrl-C)."""


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: dict[str, Process] = {}
        self.postgres: infra.Postgres | None = None
        self.redis: infra.Redis | None = None
        self.env: dict[str, str] = {}
        #: Set (e.g. by a signal handler) to abandon ``prepare``/``start`` between steps.
        self.stop_requested = threading.Event()
        #: Given to every process started with ``config.console`` (see ``Process``).
        self.console_filter: Callable[[str], str | None] | None = None

    def _check_stop_requested(self) -> None:
        if self.stop_requested.is_set():
            raise Interrupted("stop requested during start-up")

    # -- infrastructure ------------------------------------------------------------------
    def prepare(self) -> None:
        """PostgreSQL and Redis reachable, database bootstrapped and migrated."""
        cfg = self.config
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self.postgres = infra.ensure_postgres(cfg.pg_admin_url, cfg.run_dir / "postgres", cfg.private_pg_port)
        self._check_stop_requested()
        self.redis = infra.ensure_redis(cfg.redis_url, cfg.run_dir / "redis", cfg.private_redis_port)
        self._check_stop_requested()
        self.env = self._environment()
        from commerce_cli.database import bootstrap

        asyncio.run(bootstrap(self.postgres.admin_url(), cfg.database))
        self._check_stop_requested()
        migrated = subprocess.run(
            [sys.executable, "-m", "commerce_cli.main", "db", "migrate"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            errors="replace",
            start_new_session=True,  # a Ctrl-C at the terminal does not cut a migration short
        )
        if migrated.returncode != 0:
            raise RuntimeError(f"migrating the database {cfg.database} failed:\n{migrated.stderr or migrated.stdout}")
        self._check_stop_requested()

    def _secret_key(self) -> str:
        path = self.config.run_dir / "secret.key"
        if not path.exists():
            from shared.secrets import generate_key

            path.write_text(generate_key())
            path.chmod(0o600)
        return path.read_text().strip()

    def _environment(self) -> dict[str, str]:
        cfg, pg = self.config, self.postgres
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith((*tuple(ENV_PREFIX.values()), "COMMERCE_", "GATEWAY_"))
        }
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "COMMERCE_ENVIRONMENT": cfg.environment,
                "COMMERCE_PUBLIC_BASE_URL": cfg.base_url,
                "COMMERCE_REDIS_URL": self.redis.url,
                "COMMERCE_BROKER_NAMESPACE": cfg.namespace,
                "COMMERCE_SECRET_KEY": self._secret_key(),
                "COMMERCE_TEST_PROCESSOR_URL": f"http://127.0.0.1:{cfg.ports.test_processor}",
                "COMMERCE_LOG_LEVEL": cfg.log_level,
                "COMMERCE_BOOTSTRAP_DATABASE_URL": pg.admin_url(),
                "COMMERCE_DATABASE_NAME": cfg.database,
                "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
                "NOTIFICATIONS_SMTP_PORT": str(cfg.ports.smtp),
                "GATEWAY_PORT": str(cfg.ports.gateway),
            }
        )
        for service, prefix in ENV_PREFIX.items():
            env[f"{prefix}_DATABASE_URL"] = pg.url(f"commerce_{service}_app", cfg.database)
            env[f"{prefix}_DATABASE_OWNER_URL"] = pg.url(f"commerce_{service}", cfg.database)
            env[f"{prefix}_HTTP_PORT"] = str(cfg.ports.service(service))
            env[f"GATEWAY_{service.upper()}_URL"] = f"http://127.0.0.1:{cfg.ports.service(service)}"
            env[f"{prefix}_WORKER_METRICS_PORT"] = "0"
            env[f"{prefix}_RELAY_METRICS_PORT"] = "0"
        env["BILLING_SCHEDULER_METRICS_PORT"] = "0"
        env.update(cfg.extra_env)
        return env

    # -- processes ------------------------------------------------------------------------
    def _add(self, name: str, argv: list[str]) -> Process:
        process = Process(
            name, argv, self.env, self.config.run_dir / "logs" / f"{name}.log", self.config.console, self.console_filter
        )
        self.processes[name] = process
        return process

    def _ops_port(self, service_index: int, role: int, replica: int) -> int:
        base = self.config.ports.ops_base
        return 0 if not base else base + 1 + service_index + 10 * role + 100 * replica

    def define(self) -> None:
        py, cfg = sys.executable, self.config
        self._add("test-processor", [py, "-m", "devtools.test_processor", "--port", str(cfg.ports.test_processor)])
        self._add(
            "mail-sink", [py, "-m", "devtools.mail_sink", "--port", str(cfg.ports.smtp), "--dir", str(cfg.mail_dir)]
        )
        for index, service in enumerate(SERVICES):
            module = f"services.{service}"
            self._add(f"{service}-serve", [py, "-m", module, "serve"])
            self._add(
                f"{service}-relay", [py, "-m", module, "relay", "--metrics-port", str(self._ops_port(index, 1, 0))]
            )
            if service == "billing":  # the time-driven loop: due charges, retries, reminders
                self._add(
                    "billing-scheduler",
                    [py, "-m", module, "scheduler", "--metrics-port", str(self._ops_port(index, 2, 0))],
                )
            for replica in range(cfg.workers.get(service, 1)):
                self._add(
                    f"{service}-worker-{replica}",
                    [py, "-m", module, "worker", "--metrics-port", str(self._ops_port(index, 0, replica))],
                )
        self._add("gateway", [py, "-m", "gateway.proxy", "--port", str(cfg.ports.gateway)])

    def start(self, timeout: float = 60.0) -> None:
        if not self.processes:
            self.define()
        ports = self.config.ports
        busy = [
            f"{name} ({port})"
            for name, port in [
                ("gateway", ports.gateway),
                ("test processor", ports.test_processor),
                # (a caller may bring its own SMTP server: bench/p9_end_to_end.py)
                *([("SMTP sink", ports.smtp)] if "mail-sink" in self.processes else []),
                *[(s, ports.service(s)) for s in SERVICES],
            ]
            if infra.port_open("127.0.0.1", port)
        ]
        if busy:
            raise RuntimeError(f"ports already in use: {', '.join(busy)} — is another stack running?")
        for process in self.processes.values():
            self._check_stop_requested()
            process.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        cfg = self.config
        checks = {
            "test-processor": f"http://127.0.0.1:{cfg.ports.test_processor}/js.stripe.com/v3/",
            "gateway": f"{cfg.base_url}/healthz",
            **{f"{s}-serve": f"http://127.0.0.1:{cfg.ports.service(s)}/readyz" for s in SERVICES},
        }
        deadline = time.monotonic() + timeout
        pending = dict(checks)
        while pending:
            self._check_stop_requested()
            for name, url in list(pending.items()):
                process = self.processes.get(name)
                if process is not None and not process.alive():
                    raise RuntimeError(f"{name} exited during start-up; see {process.log_path}")
                if _http_ok(url):
                    pending.pop(name)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(pending)}")
            time.sleep(0.1)
        while not infra.port_open("127.0.0.1", cfg.ports.smtp):
            self._check_stop_requested()
            if time.monotonic() > deadline:
                raise RuntimeError("the mail sink did not start")
            time.sleep(0.1)
        for name, process in self.processes.items():
            if not process.alive():
                raise RuntimeError(f"{name} exited during start-up; see {process.log_path}")

    def stop_groups(self) -> list[list[Process]]:
        """The order of stopping: the front door first, the test processor and mail sink last."""
        names = list(self.processes)
        gateway = [n for n in names if n == "gateway"]
        serve = [n for n in names if n.endswith("-serve")]
        back = [n for n in names if n.endswith(("-relay", "-scheduler")) or "-worker-" in n]
        rest = [n for n in names if n not in (*gateway, *serve, *back)]
        return [[self.processes[n] for n in group] for group in (gateway, serve, back, rest) if group]

    def stop(
        self,
        timeout: float = 10.0,
        *,
        report: Callable[[Process, str], None] | None = None,
        hurry: threading.Event | None = None,
    ) -> None:
        """SIGTERM each group at once, wait up to ``timeout`` (less once ``hurry`` is set),
        then SIGKILL what is left. ``report(process, outcome)`` hears about every process
        that was started: outcome "stopped", "killed" or "exited" (before the stop)."""
        for group in self.stop_groups():
            running = [p for p in group if p.alive()]
            for process in running:
                process.signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for process in group:
                if process not in running:
                    if report is not None and process.popen is not None:
                        report(process, "exited")
                    continue
                while process.alive() and time.monotonic() < deadline and not (hurry and hurry.is_set()):
                    time.sleep(0.05)
                outcome = "stopped"
                if process.alive():
                    process.kill()
                    outcome = "killed"
                if report is not None:
                    report(process, outcome)

    def shutdown_private_infra(
        self, report: Callable[[str, str], None] | None = None, hurry: threading.Event | None = None
    ) -> None:
        """Stop the PostgreSQL and Redis this stack started (and a private PostgreSQL of its
        own left by an earlier run); ``report(what, outcome)`` hears about each. Once
        ``hurry`` is set, PostgreSQL stops in "immediate" mode rather than "fast"."""
        if self.redis is not None and self.redis.process is not None:
            port = self.redis.url.rsplit(":", 1)[1].split("/")[0]
            infra.stop_private_redis(self.redis)
            if report is not None:
                closed = not infra.port_open("127.0.0.1", int(port))
                report(f"private Redis on 127.0.0.1:{port}", "stopped" if closed else "FAILED to stop")
        if self.postgres is not None and self.postgres.private_dir is not None:
            closed = infra.stop_private_postgres(
                self.postgres, "immediate" if hurry and hurry.is_set() else "fast", timeout=12
            )
            if report is not None:
                where = f"private PostgreSQL on {self.postgres.host}:{self.postgres.port}"
                if closed:
                    report(f"{where} (data kept in {self.postgres.private_dir})", "stopped")
                else:
                    report(where, "FAILED to stop")

    # -- helpers for tests and the demo ------------------------------------------------------
    def restart(self, name: str) -> None:
        process = self.processes[name]
        process.stop()
        process.start()

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "commerce_cli.main", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout

    def create_account(self, name: str = "Demo shop", currency: str = "USD", test_mode: bool = True) -> dict:
        args = ["accounts", "create", "--name", name, "--currency", currency, "--json"]
        if test_mode:
            args.append("--test-mode")
        return json.loads(self.cli(*args).strip().splitlines()[-1])

    def api(self, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.config.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


DEMO_LINK = {
    "name": "Demo link",
    "currency": "USD",
    "line_items": [
        {
            "name": "Coffee beans, 1 kg",
            "description": "Single origin, roasted this week",
            "quantity": 1,
            "unit_amount": 2490,
        }
    ],
}


class ConsoleFilter:
    """What ``make run`` shows of the processes' output (all of it is in their log files):
    nothing until the banner is out, then warnings and errors, and any line that is not
    a structured log record (a traceback, a crash message)."""

    QUIET = frozenset({"debug", "info", "notset", ""})
    HIDDEN_KEYS = frozenset({"event", "level", "timestamp", "logger", "service", "exception"})

    def __init__(self) -> None:
        #: A plain flag (not an Event): a signal handler flips it, and must not wait for a lock.
        self.showing = False

    def __call__(self, line: str) -> str | None:
        if not self.showing or not line.strip():
            return None
        try:
            record = json.loads(line)
        except ValueError:
            return line
        if not isinstance(record, dict):
            return line
        level = str(record.get("level", "")).lower()
        if level in self.QUIET:
            return None
        extra = " ".join(f"{k}={v}" for k, v in record.items() if k not in self.HIDDEN_KEYS)
        text = f"{level}: {record.get('event', '')}" + (f"  ({extra})" if extra else "")
        if record.get("exception"):
            text += "\n" + str(record["exception"]).rstrip()
        return text


def _describe_postgres(pg: infra.Postgres, database: str, short: bool = False) -> str:
    where = f"{pg.host}:{pg.port}, database {database}"
    if pg.started:
        return f"{where} (private, started by this run" + (")" if short else f"; data in {pg.private_dir})")
    if pg.private_dir is not None:
        return f"{where} (private, left running by an earlier run" + (")" if short else "; stopped on exit)")
    return f"{where} (already running" + (")" if short else "; left running on exit)")


def _describe_redis(redis: infra.Redis, namespace: str, short: bool = False) -> str:
    where = redis.url if short else f"{redis.url}, namespace {namespace}"
    if redis.process is not None:
        return f"{where} (private, started by this run)"
    return f"{where} (already running" + (")" if short else "; left running on exit)")


def _banner(config: StackConfig, stack: Stack, account: dict, link_url: str) -> str:
    key = account["api_key"]
    rows = [
        ("Base URL", config.base_url),
        ("Demo account", f"{account['account_id']} (test mode)"),
        ("Demo API key", key),
        ("Demo payment link", link_url),
        ("Test card", "4242 4242 4242 4242, any future date, any CVC"),
        ("Mail sink", f"every message as a file in {config.mail_dir}"),
        ("Logs", f"{config.run_dir / 'logs'} (warnings and errors also appear below)"),
        ("PostgreSQL", _describe_postgres(stack.postgres, config.database, short=True)),
        ("Redis", _describe_redis(stack.redis, config.namespace, short=True)),
        ("Test processor", f"http://127.0.0.1:{config.ports.test_processor} (localstripe)"),
    ]
    rule = "=" * 78
    lines = ["", rule, " The commerce stack is running. Open the demo payment link in a browser.", ""]
    lines += [f"   {label:<20} {value}" for label, value in rows]
    lines += [
        "",
        f' Try:  curl -H "Authorization: Bearer {key}" {config.base_url}/v1/payments',
        "",
        " Ctrl-C stops everything this run started.",
        rule,
        "",
    ]
    return "\n".join(lines)


def _announce(text: str) -> None:
    """Print from a signal handler: on another thread, so that a write the main thread
    is in the middle of is never re-entered."""
    threading.Thread(target=say, args=(text,), daemon=True).start()


def _serve(stack: Stack, console: ConsoleFilter) -> None:
    config = stack.config
    say("Preparing PostgreSQL, Redis and the database…")
    stack.prepare()
    say(f"  PostgreSQL  {_describe_postgres(stack.postgres, config.database)}")
    say(f"  Redis       {_describe_redis(stack.redis, config.namespace)}")
    say(f"  Database    {config.database}: migrated")
    stack.define()
    say(
        f"Starting {len(stack.processes)} processes (the test processor, the mail sink, "
        f"{len(SERVICES)} services with their workers and relays, the gateway)…"
    )
    began = time.monotonic()
    stack.start()
    say(f"  all ready in {time.monotonic() - began:.1f} s")
    account = stack.create_account("Demo shop", "USD", True)
    status, link = stack.api("POST", "/v1/payment_links", account["api_key"], DEMO_LINK)
    if status != 201:
        raise RuntimeError(f"could not create the demo link: {status} {link}")
    (config.run_dir / "demo.json").write_text(json.dumps({**account, "link": link["url"]}, indent=2))
    say(_banner(config, stack, account, link["url"]))
    console.showing = not stack.stop_requested.is_set()

    restarts: dict[str, list[float]] = {}
    given_up: set[str] = set()
    while not stack.stop_requested.wait(1.0):
        for name, process in stack.processes.items():
            if process.alive() or name in given_up or stack.stop_requested.is_set():
                continue
            now = time.monotonic()
            recent = [t for t in restarts.get(name, []) if now - t < 60]
            code = process.popen.returncode if process.popen else None
            if len(recent) >= 3:
                say(f"!! {name} exited again (code {code}); not restarting it any more; see {process.log_path}")
                given_up.add(name)
                continue
            say(f"!! {name} exited (code {code}); restarting it; see {process.log_path}")
            process.start()
            restarts[name] = [*recent, now]


def _shut_down(stack: Stack, hurry: threading.Event) -> bool:
    """Stop what this run started, saying what; True when nothing of it is left running."""
    ours = [p for p in stack.processes.values() if p.popen is not None]
    private_pg = stack.postgres is not None and stack.postgres.private_dir is not None
    private_redis = stack.redis is not None and stack.redis.process is not None
    if not (ours or private_pg or private_redis):
        if stack.stop_requested.is_set():
            say("Nothing had been started yet.")
        return True
    if not stack.stop_requested.is_set():  # else the signal handler has said so
        say("Stopping what this run started…")

    def process_report(process: Process, outcome: str) -> None:
        code = process.popen.returncode if process.popen else None
        note = {
            "killed": "  (on the second Ctrl-C)" if hurry.is_set() else "  (did not stop in time)",
            "exited": f"  (had exited earlier, code {code})",
        }
        say(f"  {outcome:<8} {process.name}{note.get(outcome, '')}")

    def infra_report(what: str, outcome: str) -> None:
        say(f"  {outcome:<8} {what}")

    stack.stop(report=process_report, hurry=hurry)
    stack.shutdown_private_infra(report=infra_report, hurry=hurry)

    left = [p.name for p in ours if p.alive()]
    if private_pg and infra.port_open(stack.postgres.host, stack.postgres.port):
        left.append(f"private PostgreSQL on port {stack.postgres.port}")
    if private_redis and stack.redis.process.poll() is None:
        left.append("private Redis")
    if left:
        say(f"Could not stop: {', '.join(left)}.")
        return False
    kept = []
    if stack.postgres is not None and stack.postgres.private_dir is None:
        kept.append(f"PostgreSQL at {stack.postgres.host}:{stack.postgres.port}")
    if stack.redis is not None and stack.redis.process is None:
        kept.append(f"Redis at {stack.redis.url}")
    say("Stopped everything this run started.")
    if kept:
        was, is_ = ("was", "is") if len(kept) == 1 else ("were", "are")
        say(f"{' and '.join(kept)} {was} already running before and still {is_}.")
    return True


def run_foreground() -> int:
    """``make run``: everything in the foreground until Ctrl-C (or SIGTERM); the exit code
    is 0 when it started and then stopped cleanly."""
    config = StackConfig(console=True)
    config.run_dir = config.run_dir.resolve()
    stack = Stack(config)
    console = ConsoleFilter()
    stack.console_filter = console
    hurry = threading.Event()

    def on_signal(signum, _frame) -> None:
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if not stack.stop_requested.is_set():
            console.showing = False
            stack.stop_requested.set()
            _announce(f"\n{what}: stopping everything this run started (Ctrl-C again: stop without waiting)…")
        elif not hurry.is_set():
            hurry.set()
            _announce(f"{what} again: killing what is left without waiting…")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        _serve(stack, console)
    except Interrupted:
        pass
    except Exception as exc:
        if not stack.stop_requested.is_set():  # else: a step cut short by the Ctrl-C itself
            code = 1
            detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) and exc.stderr else ""
            say(f"\nerror: {exc}\n{detail}".rstrip())
            for process in stack.processes.values():
                if process.popen is not None and not process.alive():
                    say(f"  {process.name} exited with code {process.popen.returncode}; see {process.log_path}")
            if not isinstance(exc, RuntimeError | subprocess.CalledProcessError):
                traceback.print_exc()
    finally:
        console.showing = False
        if not _shut_down(stack, hurry):
            code = 1
    return code


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devtools.stack")
    parser.add_argument("command", choices=["run", "prepare"])
    args = parser.parse_args(argv)
    if args.command == "run":
        raise SystemExit(run_foreground())
    else:
        stack = Stack(StackConfig())
        stack.prepare()
        print(json.dumps({"postgres": stack.postgres.admin_url(), "redis": stack.redis.url}))


if __name__ == "__main__":
    main()
