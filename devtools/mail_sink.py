"""A local SMTP sink (aiosmtpd) that keeps every message it accepts as a file.

``python -m devtools.mail_sink --port 1025 --dir .run/mail``

Each message is written atomically as ``<dir>/<n>-<message-id>.eml`` (the bytes as
received, with an ``X-Sink-Envelope-To`` header), so tests and people can read real
messages. ``--fail-first N`` answers the first N deliveries with a transient 451 (for
exercising retries).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import signal
from pathlib import Path

from aiosmtpd.controller import Controller


class FileSink:
    def __init__(self, directory: Path, fail_first: int = 0) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = [int(p.name.split("-", 1)[0]) for p in directory.glob("*.eml") if p.name.split("-", 1)[0].isdigit()]
        self.counter = itertools.count(max(existing, default=0) + 1)
        self.fail_first = fail_first

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.fail_first > 0:
            self.fail_first -= 1
            return "451 4.3.0 Try again later"
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode()
        match = re.search(rb"^Message-ID:\s*<([^>]+)>", data, re.IGNORECASE | re.MULTILINE)
        message_id = match.group(1).decode(errors="replace") if match else "no-id"
        safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", message_id)[:120]
        name = f"{next(self.counter):07d}-{safe}.eml"
        header = ("X-Sink-Envelope-To: " + ", ".join(envelope.rcpt_tos) + "\r\n").encode()
        tmp = self.directory / (name + ".tmp")
        tmp.write_bytes(header + data)
        os.replace(tmp, self.directory / name)
        return "250 2.0.0 Message accepted"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.mail_sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", default=".run/mail")
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args(argv)
    controller = Controller(
        FileSink(Path(args.dir), args.fail_first), hostname=args.host, port=args.port, data_size_limit=10 * 1024 * 1024
    )
    controller.start()
    print(f"mail sink on {args.host}:{args.port}, messages in {Path(args.dir).resolve()}", flush=True)

    async def wait() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
