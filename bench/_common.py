"""What the benchmarks share: a bench stack, the bare baseline server, load generators,
percentile maths and the summary helpers.

Every speed figure of TARGETS is a ratio against a baseline measured in the same run,
with the same load generator, on the same machine. Two load generators:

* ``wrk`` (C, closed model: N connections each sending its next request as soon as the
  previous answers) measures the saturating throughput. `ensure_wrk` installs the Debian
  package when it is missing and we are root. A Lua script (`WRK_CHAIN_LUA`) follows a
  303 to its ``Location`` on the same wrk thread, which makes "request + follow the
  redirect" one unit.
* `openload` (this file, run in a separate process: ``python -m bench._common load``) is a
  small open-model generator on uvloop and raw asyncio streams (not aiohttp's client,
  which costs several times more CPU per request on a 2-core machine): requests start
  on a fixed schedule whatever the server does, and each latency is measured from its
  scheduled start, so a stalled server cannot hide its queue (no coordinated omission).
  It measures p50/p99 at a fixed rate, e.g. half the saturating rate.

The bare baseline (``python -m bench._common bare``) is aiohttp on uvloop, one process,
an asyncpg pool of the same size as a service's, doing one INSERT per request (GET), or
reading the body and storing it with one INSERT (POST).

Use from a bench script run as ``python bench/pN_....py``::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import _common as common
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
PYTHON = sys.executable


# -- percentiles and summaries -------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between closest ranks
    (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def say(text: str = "") -> None:
    print(text, flush=True)


def machine_load() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"
    except OSError:
        return "load average unknown"


# -- wrk -------------------------------------------------------------------------------------------
def ensure_wrk() -> str | None:
    """The path of ``wrk``; installs the Debian package when missing and possible."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("wrk is missing: installing the Debian package `wrk`…")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True, check=False)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True, check=False)
    return shutil.which("wrk")


#: Follows a 303 on the same wrk thread: the next request of the thread's connections is
#: the redirect's Location. Counts completed chains ("units": a 2xx answer to a followed
#: Location), first legs, and anything else.
WRK_CHAIN_LUA = r"""
local pending = {}
local threads = {}
units, firsts, others = 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

request = function()
  local nxt = table.remove(pending)
  if nxt then
    return wrk.format("GET", nxt)
  end
  return wrk.format("GET", wrk.path)
end

response = function(status, headers, body)
  if status == 303 or status == 302 then
    firsts = firsts + 1
    local loc = headers["Location"] or headers["location"]
    if loc then
      table.insert(pending, loc)
    end
  elseif status >= 200 and status < 300 then
    units = units + 1
  else
    others = others + 1
  end
end

function done(summary, latency, requests)
  local u, f, o = 0, 0, 0
  for _, t in ipairs(threads) do
    u = u + t:get("units")
    f = f + t:get("firsts")
    o = o + t:get("others")
  end
  io.write(string.format("CHAIN units=%d firsts=%d others=%d\n", u, f, o))
end
"""

#: Counts responses by class, for a plain (single-request) run.
WRK_COUNT_LUA = r"""
local threads = {}
ok, redirects, others = 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

response = function(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  elseif status >= 300 and status < 400 then
    redirects = redirects + 1
  else
    others = others + 1
  end
end

function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("ok")
    b = b + t:get("redirects")
    c = c + t:get("others")
  end
  io.write(string.format("COUNT ok=%d redirects=%d others=%d\n", a, b, c))
end
"""


@dataclass
class WrkResult:
    url: str
    connections: int
    duration: float
    requests: int
    requests_per_s: float
    #: Completed units per second: chains for WRK_CHAIN_LUA, 2xx+3xx answers otherwise.
    units_per_s: float
    units: int
    errors: int
    latency_ms: dict[str, float] = field(default_factory=dict)
    raw: str = ""


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(match.group(1)) * _UNIT_MS[match.group(2)] if match else math.nan


def run_wrk(
    url: str,
    *,
    connections: int = 32,
    duration: float = 10.0,
    threads: int = 1,
    chain: bool = False,
    timeout: float = 10,
) -> WrkResult:
    """A closed-model run of wrk against ``url``; ``chain`` follows 303s (one unit = both)."""
    wrk = ensure_wrk()
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian package `wrk`)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_CHAIN_LUA if chain else WRK_COUNT_LUA)
    try:
        argv = [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"--timeout={timeout:.0f}s",
            "--latency",
            "-s",
            script.name,
            url,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    finally:
        os.unlink(script.name)
    out = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    seconds = _ms(re.search(r"requests in ([\d.]+\w+),", out).group(1)) / 1000.0
    errors = 0
    for match in re.finditer(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in match.groups())
    latency = {}
    for label in ("50%", "75%", "90%", "99%"):
        m = re.search(rf"^\s*{re.escape(label)}\s+(\S+)", out, re.MULTILINE)
        if m:
            latency[f"p{label[:-1]}"] = _ms(m.group(1))
    if chain:
        m = re.search(r"CHAIN units=(\d+) firsts=(\d+) others=(\d+)", out)
        units, others = int(m.group(1)), int(m.group(3))
    else:
        m = re.search(r"COUNT ok=(\d+) redirects=(\d+) others=(\d+)", out)
        units, others = int(m.group(1)) + int(m.group(2)), int(m.group(3))
    return WrkResult(
        url=url,
        connections=connections,
        duration=seconds,
        requests=requests,
        requests_per_s=requests / seconds,
        units_per_s=units / seconds,
        units=units,
        errors=errors + others,
        latency_ms=latency,
        raw=out,
    )


def saturate(
    url: str, *, connections: Sequence[int] = (16, 48), duration: float = 8.0, chain: bool = False
) -> WrkResult:
    """The best closed-model throughput over a few connection counts (the saturating rate)."""
    best: WrkResult | None = None
    for c in connections:
        result = run_wrk(url, connections=c, duration=duration, chain=chain)
        if best is None or result.units_per_s > best.units_per_s:
            best = result
    assert best is not None
    return best


# -- the open-model load generator (its own process) ----------------------------------------------
class HttpConnection:
    """A minimal HTTP/1.1 keep-alive client connection on asyncio streams."""

    def __init__(self, host: str, port: int, local_host: str | None = None) -> None:
        self.host, self.port, self.local_host = host, port, local_host
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        local = (self.local_host, 0) if self.local_host else None
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, local_addr=local)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        response_headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                response_headers[name.strip().lower()] = value.strip()
        if "content-length" in response_headers:
            payload = await self.reader.readexactly(int(response_headers["content-length"]))
        elif response_headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            payload = b"".join(p[:-2] for p in parts)
        else:
            payload = b""
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return status, response_headers, payload


@dataclass
class LoadSpec:
    host: str
    port: int
    method: str = "GET"
    path: str = "/"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Follow a 3xx to its Location on the same connection; the unit is both requests.
    follow: bool = False
    #: Replaces ``{rand}`` in path/body per request (fresh idempotency keys, event ids...).
    randomize: bool = False


async def _open_model(spec: LoadSpec, rate: float, duration: float, max_connections: int) -> dict:
    idle: list[HttpConnection] = []
    opened = 0
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    late_starts = 0
    total = int(rate * duration)
    interval = 1.0 / rate
    loop = asyncio.get_running_loop()
    semaphore = asyncio.Semaphore(max_connections)

    async def one(scheduled: float) -> None:
        nonlocal opened, errors
        async with semaphore:
            conn = idle.pop() if idle else None
            if conn is None:
                conn = HttpConnection(spec.host, spec.port)
                opened += 1
            try:
                path, body = spec.path, spec.body
                if spec.randomize:
                    rand = secrets.token_hex(12)
                    path = path.replace("{rand}", rand)
                    body = body.replace(b"{rand}", rand.encode())
                status, headers, _ = await conn.request(spec.method, path, body, spec.headers)
                if spec.follow and 300 <= status < 400 and "location" in headers:
                    status, headers, _ = await conn.request("GET", headers["location"])
                latencies.append(loop.time() - scheduled)
                key = f"{status // 100}xx"
                statuses[key] = statuses.get(key, 0) + 1
                idle.append(conn)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                errors += 1
                conn.close()

    tasks = []
    start = loop.time() + 0.05
    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            late_starts += 1
        tasks.append(asyncio.ensure_future(one(scheduled)))
        if len(tasks) > 4096:
            tasks = [t for t in tasks if not t.done()]
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    for conn in idle:
        conn.close()
    ms = [x * 1000 for x in latencies]
    return {
        "rate": rate,
        "duration": duration,
        "sent": total,
        "completed": len(latencies),
        "achieved_rate": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "errors": errors,
        "statuses": statuses,
        "late_starts": late_starts,
        "connections": opened,
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
    }


def open_model(spec: LoadSpec, *, rate: float, duration: float = 10.0, max_connections: int = 256) -> dict:
    """Run the open-model generator in a separate process (its CPU is not ours)."""
    argv = [
        PYTHON,
        "-m",
        "bench._common",
        "load",
        "--spec",
        json.dumps({**spec.__dict__, "body": spec.body.decode("latin-1")}),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--max-connections",
        str(max_connections),
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=duration * 3 + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load_main(args: argparse.Namespace) -> None:
    raw = json.loads(args.spec)
    raw["body"] = raw["body"].encode("latin-1")
    spec = LoadSpec(**raw)
    _use_uvloop()
    result = asyncio.run(_open_model(spec, args.rate, args.duration, args.max_connections))
    print(json.dumps(result))


def _use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass


# -- the bare baseline server -----------------------------------------------------------------------
BARE_TABLE = "bench_bare.requests"
#: application_name of the bare server's PostgreSQL connections (see `CpuMeter`)
BARE_APPLICATION = "bench-bare"
BARE_DDL = [
    "CREATE SCHEMA IF NOT EXISTS bench_bare",
    f"""CREATE TABLE IF NOT EXISTS {BARE_TABLE} (
        id text PRIMARY KEY,
        token_hash bytea NOT NULL UNIQUE,
        body bytea,
        created_at timestamptz NOT NULL
    )""",
]


def _bare_app(dsn: str, pool_size: int):
    import hashlib

    import asyncpg
    from aiohttp import web

    pool_key = web.AppKey("pool", asyncpg.Pool)
    insert = f"INSERT INTO {BARE_TABLE} (id, token_hash, body, created_at) VALUES ($1, $2, $3, now())"

    async def get(request: web.Request) -> web.Response:
        token = secrets.token_urlsafe(24)
        await request.app[pool_key].execute(insert, uuid.uuid4().hex, hashlib.sha256(token.encode()).digest(), None)
        return web.Response(text="ok")

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        token = secrets.token_urlsafe(24)
        await request.app[pool_key].execute(insert, uuid.uuid4().hex, hashlib.sha256(token.encode()).digest(), body)
        return web.Response(text="ok")

    async def pool(app: web.Application):
        app[pool_key] = await asyncpg.create_pool(
            dsn, min_size=pool_size, max_size=pool_size, server_settings={"application_name": BARE_APPLICATION}
        )
        yield
        await app[pool_key].close()

    app = web.Application(client_max_size=1024 * 1024)
    app.cleanup_ctx.append(pool)
    app.router.add_get("/bare", get)
    app.router.add_post("/bare", post)
    return app


def _bare_main(args: argparse.Namespace) -> None:
    from aiohttp import web

    _use_uvloop()
    web.run_app(_bare_app(args.dsn, args.pool_size), host="127.0.0.1", port=args.port, access_log=None, print=None)


async def _prepare_bare(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for statement in BARE_DDL:
            await conn.execute(statement)
    finally:
        await conn.close()


class ServerURL(str):
    """A base URL that also carries the serving process's ``pid``."""

    pid: int


@contextlib.contextmanager
def bare_server(dsn: str, *, pool_size: int = 10) -> Iterator[ServerURL]:
    """The bare aiohttp + asyncpg endpoint in its own process; yields its base URL
    (``GET /bare``: one INSERT; ``POST /bare``: read the body, one INSERT storing it),
    a str with the server's ``pid``. Its PostgreSQL connections are named `BARE_APPLICATION`."""
    from devtools import infra

    asyncio.run(_prepare_bare(dsn))
    port = infra.free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "bench._common", "bare", "--dsn", dsn, "--port", str(port), "--pool-size", str(pool_size)],
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90  # a loaded machine starts Python slowly
        while not infra.port_open("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bare baseline server did not start")
            time.sleep(0.05)
        url = ServerURL(f"http://127.0.0.1:{port}")
        url.pid = process.pid
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def _analyze(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def analyze(dsn: str) -> None:
    """ANALYZE the database (after a warm-up): measure the steady state, where the planner
    knows the tables' sizes. A statement first planned while a table was nearly empty
    keeps a generic plan with a sequential scan (plan caching, after 5 executions) until
    autovacuum analyzes the table — within a minute or so in production, but long enough
    to distort a benchmark that starts from an empty database."""
    asyncio.run(_analyze(dsn))


# -- CPU per request: a figure the machine's load hardly moves ----------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _backend_pids(admin_dsn: str, application_name: str) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
            application_name,
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


class CpuMeter:
    """CPU seconds used by a server process and its PostgreSQL backends (found by their
    ``application_name``) while the block runs: ``with CpuMeter(...) as m: ...; m.seconds``.

    Divided by the requests served it is the CPU cost of one request on this machine,
    which other processes' load barely changes (unlike throughput on a shared machine):
    the ratio of two such costs is the throughput ratio an otherwise idle machine with the
    CPU as its bottleneck would show. (The load generator and Redis are not counted.)"""

    def __init__(self, server_pid: int, admin_dsn: str, application_name: str) -> None:
        self.server_pid, self.admin_dsn, self.application_name = server_pid, admin_dsn, application_name
        self.seconds = math.nan

    def _sample(self) -> dict[int, float]:
        pids = asyncio.run(_backend_pids(self.admin_dsn, self.application_name))
        return {pid: cpu_seconds(pid) for pid in [self.server_pid, *pids]}

    def __enter__(self) -> CpuMeter:
        self._before = self._sample()
        return self

    def __exit__(self, *exc) -> None:
        after = self._sample()
        used = {pid: cpu - self._before.get(pid, 0.0) for pid, cpu in after.items()}
        self.seconds = sum(used.values())
        self.server_seconds = used.get(self.server_pid, 0.0)
        self.database_seconds = self.seconds - self.server_seconds


# -- a stack for benchmarks ---------------------------------------------------------------------------
@dataclass
class BenchStack:
    stack: object  # devtools.stack.Stack
    admin_dsn: str

    @property
    def config(self):
        return self.stack.config

    def service_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.config.ports.service(service)}"

    def service_pid(self, service: str) -> int | None:
        return self.stack.processes[f"{service}-serve"].pid

    def keep_only(self, *names: str) -> list[str]:
        """Stop every process of the stack except those whose name starts with one of
        ``names`` (e.g. after set-up, the services a scenario does not touch: on a 2-core
        machine their idle polling is noise); returns what was stopped."""
        stopped = []
        for name, process in self.stack.processes.items():
            if not name.startswith(names) and process.alive():
                process.stop()
                stopped.append(name)
        return stopped

    def create_account(self, name: str = "Bench shop") -> dict:
        return self.stack.create_account(name, "USD", True)

    def api(self, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
        return self.stack.api(method, path, key, body)


@contextlib.contextmanager
def bench_stack(
    label: str,
    *,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    omit: tuple[str, ...] = (),
    before_start: Callable[[Any], None] | None = None,
) -> Iterator[BenchStack]:
    """The whole system on free ports, in a database and Redis namespace of its own (the
    running PostgreSQL and Redis, or private ones devtools starts); removed afterwards.
    ``workers`` processes per service; ``omit`` names processes not to start (e.g. the
    mail sink, for a bench with its own SMTP server), ``before_start(config)`` runs once
    the ports are known and the database is migrated."""
    from commerce_cli.database import drop_database
    from devtools import infra
    from devtools.stack import SERVICES, Ports, Stack, StackConfig

    suffix = uuid.uuid4().hex[:8]
    run_dir = Path(tempfile.mkdtemp(prefix=f"commerce-bench-{label}-"))
    admin = os.environ.get("COMMERCE_BOOTSTRAP_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("COMMERCE_REDIS_URL", "redis://127.0.0.1:6379/0")
    pg = infra.ensure_postgres(admin, ROOT / ".run" / "test-infra" / "postgres")
    redis = infra.ensure_redis(redis_url, ROOT / ".run" / "test-infra" / "redis")
    config = StackConfig(
        run_dir=run_dir,
        database=f"commerce_bench_{label}_{suffix}",
        pg_admin_url=pg.admin_url(),
        redis_url=redis.url,
        namespace=f"commerce-bench-{label}-{suffix}",
        ports=Ports.free(),
        environment="test",
        log_level="WARNING",
        extra_env=dict(extra_env or {}),
        workers=dict.fromkeys(SERVICES, workers),
    )
    stack = Stack(config)
    try:
        stack.prepare()
        stack.define()
        for name in omit:
            stack.processes.pop(name)
        if before_start is not None:
            before_start(config)
        stack.start(timeout=240)
        admin_dsn = pg.admin_url().rsplit("/", 1)[0] + "/" + config.database
        yield BenchStack(stack, admin_dsn)
    finally:
        stack.stop()
        try:
            asyncio.run(drop_database(pg.admin_url(), config.database))
        except Exception as exc:  # pragma: no cover - best effort
            say(f"(could not drop {config.database}: {exc!r})")
        with contextlib.suppress(Exception):
            _delete_namespace(config.redis_url, config.namespace)
        shutil.rmtree(run_dir, ignore_errors=True)


def _delete_namespace(url: str, namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


# -- profiling ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def py_spy(pid: int | None, output: Path | None) -> Iterator[None]:
    """``py-spy record`` of ``pid`` while the block runs (nothing if either is missing)."""
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if pid is None or output is None or not Path(spy).exists():
        yield
        return
    fmt = "speedscope" if output.suffix == ".json" else ("raw" if output.suffix == ".txt" else "flamegraph")
    process = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "250", "--format", fmt, "--output", str(output), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._common")
    sub = parser.add_subparsers(dest="command", required=True)
    bare = sub.add_parser("bare", help="serve the bare baseline endpoint")
    bare.add_argument("--dsn", required=True)
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--pool-size", type=int, default=10)
    load = sub.add_parser("load", help="open-model load (prints one JSON line)")
    load.add_argument("--spec", required=True)
    load.add_argument("--rate", type=float, required=True)
    load.add_argument("--duration", type=float, default=10.0)
    load.add_argument("--max-connections", type=int, default=256)
    args = parser.parse_args(argv)
    if args.command == "bare":
        _bare_main(args)
    else:
        _load_main(args)


if __name__ == "__main__":
    main()
