"""Where a webhook may go (PRODUCT §1: no SSRF into private ranges). Pure: no I/O.

Live accounts: ``https://`` only, to hosts whose every address is a public unicast
address. Test-mode accounts: ``http://`` too, and loopback addresses besides public ones
(local development; an operator can turn loopback off) — still never private,
link-local (cloud metadata), CGNAT, multicast, reserved or unspecified addresses.

`classify` maps one address to a `Category`; it is default-deny for IPv6 (only global
unicast ``2000::/3`` outside the special-purpose blocks is public) and looks through the
forms that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
6to4 ``2002::/16``), which reach that IPv4 address. `check_url` applies the URL rules;
the resolution of a name, at registration and again at every connection (so DNS
rebinding cannot swap in another address), is `sender.py`'s, through `vet_addresses`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

import yarl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2048


class Category(StrEnum):
    PUBLIC = "public"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link-local"
    SHARED = "carrier-grade NAT"
    MULTICAST = "multicast"
    BROADCAST = "broadcast"
    UNSPECIFIED = "unspecified"
    RESERVED = "reserved"
    DOCUMENTATION = "documentation"
    BENCHMARKING = "benchmarking"
    UNIQUE_LOCAL = "unique local"


def _nets(*pairs: tuple[str, Category]) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Category], ...]:
    return tuple((ipaddress.ip_network(net), cat) for net, cat in pairs)


#: IPv4 special-purpose blocks (RFC 6890 and the IANA registry), most specific first.
#: Every block here is refused, including the few the registry calls globally reachable
#: (192.0.0.9, 192.0.0.10: no webhook receiver lives there).
IPV4_BLOCKS = _nets(
    ("255.255.255.255/32", Category.BROADCAST),
    ("0.0.0.0/8", Category.UNSPECIFIED),
    ("10.0.0.0/8", Category.PRIVATE),
    ("100.64.0.0/10", Category.SHARED),
    ("127.0.0.0/8", Category.LOOPBACK),
    ("169.254.0.0/16", Category.LINK_LOCAL),
    ("172.16.0.0/12", Category.PRIVATE),
    ("192.0.0.0/24", Category.RESERVED),
    ("192.0.2.0/24", Category.DOCUMENTATION),
    ("192.88.99.0/24", Category.RESERVED),
    ("192.168.0.0/16", Category.PRIVATE),
    ("198.18.0.0/15", Category.BENCHMARKING),
    ("198.51.100.0/24", Category.DOCUMENTATION),
    ("203.0.113.0/24", Category.DOCUMENTATION),
    ("224.0.0.0/4", Category.MULTICAST),
    ("240.0.0.0/4", Category.RESERVED),
)
#: IPv6 blocks inside global unicast (2000::/3) that are not public.
IPV6_BLOCKS = _nets(
    ("2001:db8::/32", Category.DOCUMENTATION),
    ("2001::/23", Category.RESERVED),  # IETF protocol assignments (Teredo, ORCHID, benchmarking …)
    ("3fff::/20", Category.DOCUMENTATION),
    ("2002::/16", Category.PUBLIC),  # 6to4: decided by the embedded IPv4 address below
)
#: IPv6 blocks outside global unicast, most specific first; the rest of the space is reserved.
IPV6_SPECIAL = _nets(
    ("::/128", Category.UNSPECIFIED),
    ("::1/128", Category.LOOPBACK),
    ("64:ff9b:1::/48", Category.PRIVATE),  # local-use NAT64 (RFC 8215)
    ("100::/64", Category.RESERVED),  # discard-only
    ("fc00::/7", Category.UNIQUE_LOCAL),
    ("fe80::/10", Category.LINK_LOCAL),
    ("fec0::/10", Category.PRIVATE),  # site-local (deprecated)
    ("ff00::/8", Category.MULTICAST),
)
GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
MAPPED = ipaddress.ip_network("::ffff:0:0/96")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a connection to ``ip`` reaches, for the forms that embed one."""
    value = int(ip)
    if ip in MAPPED or ip in NAT64:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in SIX_TO_FOUR:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)
    return None


def classify(ip: IPAddress) -> Category:
    if isinstance(ip, ipaddress.IPv4Address):
        for net, category in IPV4_BLOCKS:
            if ip in net:
                return category
        return Category.PUBLIC
    inner = embedded_ipv4(ip)
    if inner is not None:
        return classify(inner)
    for net, category in IPV6_SPECIAL:
        if ip in net:
            return category
    if ip not in GLOBAL_UNICAST:
        return Category.RESERVED
    for net, category in IPV6_BLOCKS:
        if ip in net:
            return category
    return Category.PUBLIC


@dataclass(frozen=True)
class Policy:
    """What one account's endpoints may target."""

    #: Live accounts: https only.
    https_only: bool
    #: Test-mode accounts: loopback addresses too (unless the operator turned it off).
    allow_loopback: bool

    @classmethod
    def for_account(cls, test_mode: bool, *, test_loopback: bool = True) -> Policy:
        return cls(https_only=not test_mode, allow_loopback=test_mode and test_loopback)

    @property
    def categories(self) -> frozenset[Category]:
        return frozenset({Category.PUBLIC, Category.LOOPBACK} if self.allow_loopback else {Category.PUBLIC})


LIVE = Policy.for_account(False)
TEST = Policy.for_account(True)


class UrlRefused(ValueError):
    """The URL may not be a webhook target for this account; the message says why."""


def parse_ip(text: str) -> IPAddress | None:
    """An IP address literal (``[…]`` stripped, an IPv6 zone dropped), else None."""
    host = text.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def vet_address(address: str | IPAddress, policy: Policy, *, host: str | None = None) -> None:
    """Refuse one address the account may not reach (`UrlRefused`)."""
    ip = parse_ip(address) if isinstance(address, str) else address
    if ip is None:
        raise UrlRefused(f"{host or address} resolves to something that is not an IP address")
    category = classify(ip)
    if category not in policy.categories:
        where = f"has a host ({host}) that resolves to" if host and host != str(ip) else "is"
        scope = "public or loopback addresses" if policy.allow_loopback else "public addresses"
        raise UrlRefused(f"{where} a {category} address ({ip}); webhooks may only target {scope}")


def vet_addresses(host: str, addresses: list[str], policy: Policy) -> None:
    """Every address a name resolves to must be allowed (one private answer refuses all)."""
    if not addresses:
        raise UrlRefused(f"has a host ({host}) that does not resolve to any address")
    for address in addresses:
        vet_address(address, policy, host=host)


def _is_localhost_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def _non_canonical_number(host: str) -> bool:
    """``2130706433``, ``127.1``, ``0177.0.0.1``: numeric forms that the C resolver maps
    onto an IPv4 address but that are not a dotted quad."""
    if not host.replace(".", "").isdigit():
        return False
    parts = host.split(".")
    return len(parts) != 4 or any(p == "" or (len(p) > 1 and p[0] == "0") or int(p) > 255 for p in parts)


@dataclass(frozen=True)
class Target:
    """A URL that passed the syntax rules: its host is a name to resolve or an IP literal."""

    url: yarl.URL
    host: str
    port: int
    ip: IPAddress | None


def check_url(text: str, policy: Policy) -> Target:
    """The URL rules that need no network. Raises `UrlRefused`."""
    if len(text) > MAX_URL_LENGTH:
        raise UrlRefused(f"must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or c in "\\\x7f" for c in text) or not text.isprintable():
        raise UrlRefused("must not contain spaces, backslashes or control characters")
    try:
        url = yarl.URL(text)
        host = url.raw_host
        port = url.port
    except (ValueError, TypeError):
        raise UrlRefused("is not a valid URL") from None
    scheme = (url.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise UrlRefused("must be an https:// URL" if policy.https_only else "must be an http:// or https:// URL")
    if scheme != "https" and policy.https_only:
        raise UrlRefused("must be an https:// URL (live accounts; test-mode accounts may also use http)")
    if not url.is_absolute() or not host:
        raise UrlRefused("must name a host")
    if url.raw_user is not None or url.raw_password is not None:
        raise UrlRefused("must not contain a user name or password")
    if url.raw_fragment:
        raise UrlRefused("must not contain a fragment (#…)")
    if port is None or not 0 < port < 65536:
        raise UrlRefused("has an invalid port")
    ip = parse_ip(host)
    if ip is not None:
        vet_address(ip, policy)
    elif _non_canonical_number(host):
        raise UrlRefused("has a host that is not a canonical IP address")
    elif _is_localhost_name(host) and not policy.allow_loopback:
        raise UrlRefused("is a loopback address (localhost); webhooks may only target public addresses")
    return Target(url=url, host=host, port=port, ip=ip)
