from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class CheckoutSettings(ServiceSettings):
    """Environment: ``CHECKOUT_*`` (and ``COMMERCE_*`` for what all services share)."""

    model_config = SettingsConfigDict(env_prefix="CHECKOUT_", extra="ignore", frozen=True)

    database_url: str = "postgresql://commerce_checkout_app@127.0.0.1:5432/commerce"
    database_owner_url: str = "postgresql://commerce_checkout@127.0.0.1:5432/commerce"
    http_port: int = 8001
    worker_metrics_port: int = 9001
    relay_metrics_port: int = 9011
    #: How long a checkout session can be paid after it was opened.
    session_ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    #: How long account changes wait for every service to apply them before answering.
    propagation_timeout_s: float = Field(default=20.0, gt=0)

    # -- abuse limits (TARGETS R11; shared/web/ratelimit.py). Each limit allows its count
    # at once, then refills evenly over the window; 0 turns a limit off. --------------------
    #: Checkout sessions one client IP may open (GET /pay/{slug}, any link) per window.
    rate_limit_open_per_ip: int = Field(default=60, ge=0)
    #: Checkout sessions one payment link may open per window, from all clients together.
    rate_limit_open_per_link: int = Field(default=600, ge=0)
    #: Checkout submissions (submit and complete) one client IP may make per window.
    rate_limit_submit_per_ip: int = Field(default=120, ge=0)
    #: Checkout submissions (submit and complete) on one checkout session per window.
    rate_limit_submit_per_session: int = Field(default=20, ge=0)
    #: The window of the limits above, in seconds.
    rate_limit_window_s: int = Field(default=60, ge=1, le=86_400)
    #: Proxies whose X-Forwarded-For is believed (comma-separated addresses or CIDR networks):
    #: the router / ingress in front of the service. Anyone else's X-Forwarded-For is ignored.
    trusted_proxies: str = "127.0.0.0/8,::1/128"

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        from shared.web.ratelimit import parse_networks

        parse_networks(value)  # ValueError (a settings error at start-up) on garbage
        return value
