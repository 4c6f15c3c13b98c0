"""TARGETS P1: open a payment link → checkout session created and page served.

Measured unit (the figure the target applies to): the PAIR a buyer's browser makes —
``GET /pay/{slug}`` (a new checkout session is created; 303) followed by
``GET /checkout/{token}`` (the page is rendered and served; 200) — because TARGETS says
"session created and page served". One unit = both requests. The 303 alone ("session
created") is printed too, as a secondary figure.

Baseline: a bare aiohttp + asyncpg endpoint doing one INSERT (bench/_common.py), one
process on uvloop with a pool of the same size as the service's, in the same database,
measured in the same run with the same load generators on the same machine.

Both are hit directly on their own port: the checkout service's port, NOT through the
Python gateway (gateway/proxy.py is a development convenience; production has nginx or
an ingress in front). The whole stack is started to set up (an account, a link); then
only the checkout service's processes (serve, worker, relay) keep running — the other
services' idle workers would only add noise on a 2-core machine.
The abuse limits (R11) stay ON with thresholds far above the load, so every request pays
its rate-limit check (one Redis round trip) exactly as in production.

Load generators:
* saturating throughput: ``wrk`` (closed model, several connection counts, the best
  kept); for the pair a Lua script follows each 303 on the same wrk thread;
* p99 at half the saturating rate: the open-model generator of bench/_common.py (uvloop,
  raw asyncio streams, its own process), each endpoint at half ITS OWN saturating rate,
  latency from each request's scheduled start (for the pair: until the page arrived).

Each repeat measures the baseline and the system back to back; the summary is the median
of the repeats. After a warm-up the database is ANALYZEd (see `_common.analyze`: the
steady state, not the first minute of an empty database). A second figure, CPU per unit
(the server process plus its PostgreSQL backends, from /proc), barely moves with the
machine's other load, unlike requests/s on a shared 2-core machine; the ratio of the CPU
costs is the throughput ratio an otherwise idle, CPU-bound machine would show.

Run: ``.venv/bin/python bench/p1_open_link.py [--repeats 3] [--duration 8]``
(``--profile DIR`` records a py-spy flame graph of the checkout process during one run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common as common

LINK = {
    "name": "Bench link",
    "currency": "USD",
    "line_items": [
        {"name": "Coffee beans, 1 kg", "description": "Single origin", "quantity": 1, "unit_amount": 2490},
        {"name": "Grinder", "quantity": 1, "unit_amount": 8900},
    ],
}
#: Limits far above any load here: the check runs on every request but never refuses.
HIGH_LIMITS = {
    "CHECKOUT_RATE_LIMIT_OPEN_PER_IP": "1000000000",
    "CHECKOUT_RATE_LIMIT_OPEN_PER_LINK": "1000000000",
    "CHECKOUT_RATE_LIMIT_SUBMIT_PER_IP": "1000000000",
    "CHECKOUT_RATE_LIMIT_SUBMIT_PER_SESSION": "1000000000",
    # a loaded machine: account creation waits for every service; give it time
    "CHECKOUT_PROPAGATION_TIMEOUT_S": "120",
    # the services not measured (stopped after set-up) hold few PostgreSQL connections
    **{f"{prefix}_DB_POOL_MAX": "2" for prefix in ("BILLING", "NOTIFICATIONS", "CRM_SYNC")},
}
TARGET_RATIO = 0.60
TARGET_P99_FACTOR = 2.0


def _fmt(value: float, unit: str = "") -> str:
    return f"{value:,.0f}{unit}" if value >= 100 else f"{value:.2f}{unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of each wrk run")
    parser.add_argument("--latency-duration", type=float, default=8.0, help="seconds of each open-model run")
    parser.add_argument("--connections", default="16,48", help="wrk connection counts tried for saturation")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the checkout process into this directory")
    parser.add_argument(
        "--profile-format",
        default="svg",
        choices=["svg", "txt", "json"],
        help="flame graph, collapsed stacks, speedscope",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the open-model p99 runs")
    parser.add_argument(
        "--limits-off", action="store_true", help="turn the abuse limits off (to measure what their check costs)"
    )
    args = parser.parse_args(argv)
    connections = [int(c) for c in args.connections.split(",")]

    if common.ensure_wrk() is None:
        common.say("P1: wrk is not available (apt-get install wrk); cannot measure.")
        return 2
    common.say(f"P1 open a payment link — {common.machine_load()}")
    env = {**HIGH_LIMITS, **({k: "0" for k in HIGH_LIMITS if "RATE_LIMIT" in k} if args.limits_off else {})}
    with common.bench_stack("p1", extra_env=env) as bench:
        account = bench.create_account("P1 shop")
        status, link = bench.api("POST", "/v1/payment_links", account["api_key"], LINK)
        assert status == 201, (status, link)
        # opening a link touches only the checkout service: the other services' processes
        # (idle workers poll Redis every 20 ms), the router and the test processor go
        bench.keep_only("checkout-")
        checkout = bench.service_url("checkout")
        slug_path = "/pay/" + link["url"].rsplit("/pay/", 1)[1]
        pay_url = checkout + slug_path
        with common.bare_server(bench.admin_dsn) as bare_base:
            bare_url = bare_base + "/bare"
            # warm-up: connections, prepared statements, caches, JIT-less Python warm paths
            common.run_wrk(bare_url, connections=16, duration=3)
            common.run_wrk(pay_url, connections=16, duration=3, chain=True)
            common.analyze(bench.admin_dsn)  # the steady state: tables with statistics
            rows = []
            for repeat in range(1, args.repeats + 1):
                profile = args.profile if args.profile is not None and repeat == 1 else None
                if profile is not None:
                    profile.mkdir(parents=True, exist_ok=True)
                pid = bench.service_pid("checkout") if profile else None
                ext = args.profile_format
                # interleaved: each connection count measures the baseline and the system back
                # to back, so a change of the machine's load hits both alike
                bare = pair = opened = None
                cpu = {"bare": [], "pair": [], "open": []}  # (CPU seconds, units) per run
                checkout_pid = bench.service_pid("checkout")
                for c in connections:
                    with common.CpuMeter(bare_base.pid, bench.admin_dsn, common.BARE_APPLICATION) as m:
                        b = common.run_wrk(bare_url, connections=c, duration=args.duration)
                    cpu["bare"].append((m.seconds, b.units, m.server_seconds))
                    with (
                        common.py_spy(pid, profile / f"p1-pair-c{c}.{ext}" if profile else None),
                        common.CpuMeter(checkout_pid, bench.admin_dsn, "checkout-http") as m,
                    ):
                        p = common.run_wrk(pay_url, connections=c, duration=args.duration, chain=True)
                    cpu["pair"].append((m.seconds, p.units, m.server_seconds))
                    with (
                        common.py_spy(pid, profile / f"p1-open-c{c}.{ext}" if profile else None),
                        common.CpuMeter(checkout_pid, bench.admin_dsn, "checkout-http") as m,
                    ):
                        o = common.run_wrk(pay_url, connections=c, duration=args.duration)
                    cpu["open"].append((m.seconds, o.units, m.server_seconds))
                    bare = b if bare is None or b.units_per_s > bare.units_per_s else bare
                    pair = p if pair is None or p.units_per_s > pair.units_per_s else pair
                    opened = o if opened is None or o.units_per_s > opened.units_per_s else opened
                cost = {k: 1e6 * sum(x[0] for x in v) / max(1, sum(x[1] for x in v)) for k, v in cpu.items()}
                in_server = {k: 1e6 * sum(x[2] for x in v) / max(1, sum(x[1] for x in v)) for k, v in cpu.items()}
                row = {
                    "bare": bare.units_per_s,
                    "pair": pair.units_per_s,
                    "open": opened.units_per_s,
                    "errors": bare.errors + pair.errors + opened.errors,
                    "cpu_us": cost,
                }
                if not args.no_latency:
                    host, port = "127.0.0.1", bench.config.ports.checkout
                    bare_port = int(bare_base.rsplit(":", 1)[1])
                    lat_bare = common.open_model(
                        common.LoadSpec("127.0.0.1", bare_port, path="/bare"),
                        rate=bare.units_per_s / 2,
                        duration=args.latency_duration,
                    )
                    lat_pair = common.open_model(
                        common.LoadSpec(host, port, path=slug_path, follow=True),
                        rate=pair.units_per_s / 2,
                        duration=args.latency_duration,
                    )
                    row.update(
                        bare_p99=lat_bare["p99_ms"],
                        pair_p99=lat_pair["p99_ms"],
                        bare_p50=lat_bare["p50_ms"],
                        pair_p50=lat_pair["p50_ms"],
                        lat_errors=lat_bare["errors"] + lat_pair["errors"],
                        lat_rates=(lat_bare["achieved_rate"], lat_pair["achieved_rate"]),
                    )
                rows.append(row)
                line = (
                    f"  repeat {repeat}: bare {_fmt(row['bare'])} req/s | pair {_fmt(row['pair'])} pairs/s "
                    f"(ratio {row['pair'] / row['bare']:.2f}) | 303 alone {_fmt(row['open'])} req/s "
                    f"(ratio {row['open'] / row['bare']:.2f})"
                )
                if "bare_p99" in row:
                    line += (
                        f" | p99 at half rate: bare {row['bare_p99']:.1f} ms, pair {row['pair_p99']:.1f} ms"
                        f" (p50 {row['bare_p50']:.1f} / {row['pair_p50']:.1f} ms)"
                    )
                line += (
                    f" | CPU µs per unit (server + its PostgreSQL backends): bare {cost['bare']:.0f}, "
                    f"pair {cost['pair']:.0f} (ratio {cost['bare'] / cost['pair']:.2f}), "
                    f"303 {cost['open']:.0f} (ratio {cost['bare'] / cost['open']:.2f}); of which in the Python "
                    f"process: {in_server['bare']:.0f} / {in_server['pair']:.0f} / {in_server['open']:.0f}"
                )
                if row["errors"] or row.get("lat_errors"):
                    line += f" | errors {row['errors']} + {row.get('lat_errors', 0)}"
                common.say(line)

    bare_rps = common.median([r["bare"] for r in rows])
    pair_rps = common.median([r["pair"] for r in rows])
    open_rps = common.median([r["open"] for r in rows])
    ratio = common.median([r["pair"] / r["bare"] for r in rows])
    open_ratio = common.median([r["open"] / r["bare"] for r in rows])
    common.say(f"P1 (median of {len(rows)} repeats; wrk closed model, checkout port directly, not via the gateway):")
    common.say(f"  bare aiohttp+asyncpg one INSERT: {_fmt(bare_rps)} req/s")
    common.say(
        f"  open link → session created + page served (pair): {_fmt(pair_rps)} pairs/s  "
        f"ratio {ratio:.2f} (target ≥ {TARGET_RATIO:.2f}) {'OK' if ratio >= TARGET_RATIO else 'MISSED'}"
    )
    common.say(f"  303 alone (session created): {_fmt(open_rps)} req/s  ratio {open_ratio:.2f}")
    cpu_pair = common.median([r["cpu_us"]["bare"] / r["cpu_us"]["pair"] for r in rows])
    cpu_open = common.median([r["cpu_us"]["bare"] / r["cpu_us"]["open"] for r in rows])
    common.say(
        "  CPU cost per unit (server process + its PostgreSQL backends; what the machine's other load barely "
        f"moves): bare {common.median([r['cpu_us']['bare'] for r in rows]):.0f} µs, "
        f"pair {common.median([r['cpu_us']['pair'] for r in rows]):.0f} µs (ratio {cpu_pair:.2f}), "
        f"303 {common.median([r['cpu_us']['open'] for r in rows]):.0f} µs (ratio {cpu_open:.2f})"
    )
    if not args.no_latency:
        bare_p99 = common.median([r["bare_p99"] for r in rows])
        pair_p99 = common.median([r["pair_p99"] for r in rows])
        factor = pair_p99 / bare_p99
        common.say(
            f"  p99 at half the saturating rate (open model): bare {bare_p99:.1f} ms, pair {pair_p99:.1f} ms  "
            f"= {factor:.2f} × (target ≤ {TARGET_P99_FACTOR:.1f}) {'OK' if factor <= TARGET_P99_FACTOR else 'MISSED'}"
        )
    common.say(f"  {common.machine_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
