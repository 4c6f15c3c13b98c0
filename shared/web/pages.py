"""What every buyer page sends: a strict Content-Security-Policy (no inline script or
style; only our assets and the processor's) and the usual hardening headers."""

from __future__ import annotations

from urllib.parse import urlsplit

STRIPE_JS_ORIGIN = "https://js.stripe.com"


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def processor_origin(script_url: str) -> str:
    """The origin a page loads the processor's script from (Stripe's, or the test
    processor's, which serves its script and API from one origin)."""
    return STRIPE_JS_ORIGIN if script_url.startswith(STRIPE_JS_ORIGIN) else origin(script_url)


def security_headers(processor: str | None = None) -> dict[str, str]:
    script, connect, frame = ["'self'"], ["'self'"], ["'none'"]
    if processor == STRIPE_JS_ORIGIN:
        script.append(STRIPE_JS_ORIGIN)
        connect.append("https://api.stripe.com")
        frame = [STRIPE_JS_ORIGIN, "https://hooks.stripe.com"]
    elif processor:
        script.append(processor)
        connect.append(processor)
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(script),
            "connect-src " + " ".join(connect),
            "frame-src " + " ".join(frame),
            "style-src 'self'",
            "img-src 'self' https: data:",
            "font-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def processor_view(config) -> dict:
    """What a buyer page needs of a processor (``shared.processor.base.ProcessorConfig``):
    its type, publishable key and where its script comes from."""
    view = {"type": config.type, "publishable_key": config.publishable_key}
    if config.type == "test":
        view["api_base"] = config.browser_api_base
        view["script_url"] = f"{config.browser_api_base.rstrip('/')}/js.stripe.com/v3/"
    else:
        view["script_url"] = f"{STRIPE_JS_ORIGIN}/v3/"
    return view
