"""The buyer endpoints' abuse limits (TARGETS R11), from CheckoutSettings.

* opening a session (``GET /pay/{slug}``): per client IP and per link (the link's slug);
* submitting (``POST /api/checkout/{token}`` and ``…/complete``): per client IP and per
  checkout session (its token, hashed);
* pricing the buyer's choices while they change them (``…/summary``): the same two
  subjects in buckets of their own, `PRICING_FACTOR` times the submission limits — a
  buyer trying quantities must not use up the budget of paying, yet guessing discount
  codes through it stays bounded per IP and per session.

Nothing else is limited here; in particular processor webhooks never pass through these
checks. A client whose address is itself a trusted proxy (a proxy that did not say for
whom, or our own infrastructure) skips the per-IP limits — otherwise every buyer behind
a misconfigured proxy would share one budget — but not the per-link / per-session ones.
Each check is one Redis round trip (on the limiter's own connection), made before any
database work.
"""

from __future__ import annotations

from aiohttp import web

from shared.ids import token_hash
from shared.web.keys import EXTRAS, SETTINGS
from shared.web.ratelimit import Limit, Rate, RateLimiter, client_ip, ip_subject, parse_networks

_STATE = "abuse_limits"
#: The live-summary limits are this many times the submission limits (0 stays "no limit").
PRICING_FACTOR = 5


class _Policy:
    def __init__(self, app: web.Application) -> None:
        s = app[SETTINGS]
        window = s.rate_limit_window_s
        self.limiter = RateLimiter(s.common.redis_url, s.common.broker_namespace)
        self.trusted = parse_networks(s.trusted_proxies)
        self.open_ip = Rate(s.rate_limit_open_per_ip, window)
        self.open_link = Rate(s.rate_limit_open_per_link, window)
        self.submit_ip = Rate(s.rate_limit_submit_per_ip, window)
        self.submit_session = Rate(s.rate_limit_submit_per_session, window)
        self.price_ip = Rate(s.rate_limit_submit_per_ip * PRICING_FACTOR, window)
        self.price_session = Rate(s.rate_limit_submit_per_session * PRICING_FACTOR, window)


def _policy(request: web.Request) -> _Policy:
    extras = request.app[EXTRAS]
    policy = extras.get(_STATE)
    if policy is None:
        policy = extras[_STATE] = _Policy(request.app)
    return policy


def _ip_limit(request: web.Request, policy: _Policy, name: str, rate: Rate) -> list[Limit]:
    client = client_ip(request, policy.trusted)
    return [] if client.trusted else [Limit(name, ip_subject(client.address), rate)]


async def check_open(request: web.Request, slug: str) -> None:
    """Raises TooManyRequests (429, Retry-After) past the session-opening limits."""
    policy = _policy(request)
    await policy.limiter.enforce(
        *_ip_limit(request, policy, "open-ip", policy.open_ip),
        Limit("open-link", slug, policy.open_link),
        detail="Too many checkouts were opened; please wait a moment and try again.",
    )


async def check_submit(request: web.Request, token: str) -> None:
    """Raises TooManyRequests (429, Retry-After) past the submission limits."""
    policy = _policy(request)
    await policy.limiter.enforce(
        *_ip_limit(request, policy, "submit-ip", policy.submit_ip),
        Limit("submit-session", token_hash(token).hex()[:32], policy.submit_session),
        detail="Too many payment attempts; please wait a moment and try again.",
    )


async def check_pricing(request: web.Request, token: str) -> None:
    """Raises TooManyRequests (429, Retry-After) past the live-summary limits."""
    policy = _policy(request)
    await policy.limiter.enforce(
        *_ip_limit(request, policy, "price-ip", policy.price_ip),
        Limit("price-session", token_hash(token).hex()[:32], policy.price_session),
        detail="Too many price updates; please wait a moment and try again.",
    )
