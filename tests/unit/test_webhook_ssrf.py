"""Where webhooks may go (services/notifications/webhooks/ssrf.py; PRODUCT §1, decision 64).

Every special-purpose block at its edges, the forms that embed an IPv4 address, the
standard library's own idea of "global" as an oracle over all of IPv4 and samples of
IPv6, and the URL rules for live and test-mode accounts."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.webhooks import ssrf
from services.notifications.webhooks.ssrf import LIVE, TEST, Category, Policy, UrlRefused, check_url, classify


def ip(text: str):
    return ipaddress.ip_address(text)


# -- one address ------------------------------------------------------------------------------------
REFUSED_V4 = {
    "0.0.0.0": Category.UNSPECIFIED,
    "0.255.255.255": Category.UNSPECIFIED,
    "10.0.0.0": Category.PRIVATE,
    "10.255.255.255": Category.PRIVATE,
    "100.64.0.0": Category.SHARED,
    "100.127.255.255": Category.SHARED,
    "127.0.0.1": Category.LOOPBACK,
    "127.255.255.254": Category.LOOPBACK,
    "169.254.169.254": Category.LINK_LOCAL,  # cloud metadata
    "169.254.0.0": Category.LINK_LOCAL,
    "172.16.0.0": Category.PRIVATE,
    "172.31.255.255": Category.PRIVATE,
    "192.0.0.0": Category.RESERVED,
    "192.0.0.255": Category.RESERVED,
    "192.0.2.1": Category.DOCUMENTATION,
    "192.88.99.1": Category.RESERVED,
    "192.168.0.1": Category.PRIVATE,
    "192.168.255.255": Category.PRIVATE,
    "198.18.0.0": Category.BENCHMARKING,
    "198.19.255.255": Category.BENCHMARKING,
    "198.51.100.7": Category.DOCUMENTATION,
    "203.0.113.9": Category.DOCUMENTATION,
    "224.0.0.1": Category.MULTICAST,
    "239.255.255.255": Category.MULTICAST,
    "240.0.0.1": Category.RESERVED,
    "255.255.255.254": Category.RESERVED,
    "255.255.255.255": Category.BROADCAST,
}
#: Just outside the blocks above: public.
PUBLIC_V4 = [
    "1.1.1.1",
    "8.8.8.8",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "191.255.255.255",
    "192.0.1.0",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "93.184.216.34",
]
REFUSED_V6 = {
    "::": Category.UNSPECIFIED,
    "::1": Category.LOOPBACK,
    "::2": Category.RESERVED,  # IPv4-compatible / unassigned
    "::ffff:127.0.0.1": Category.LOOPBACK,
    "::ffff:10.1.2.3": Category.PRIVATE,
    "::ffff:169.254.169.254": Category.LINK_LOCAL,
    "::ffff:0.0.0.0": Category.UNSPECIFIED,
    "64:ff9b::7f00:1": Category.LOOPBACK,  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe": Category.LINK_LOCAL,  # NAT64 of 169.254.169.254
    "64:ff9b:1::1": Category.PRIVATE,
    "100::1": Category.RESERVED,
    "2001::1": Category.RESERVED,  # Teredo
    "2001:1ff:ffff::1": Category.RESERVED,
    "2001:db8::1": Category.DOCUMENTATION,
    "2002:7f00:1::1": Category.LOOPBACK,  # 6to4 of 127.0.0.1
    "2002:c0a8:101::": Category.PRIVATE,  # 6to4 of 192.168.1.1
    "3fff::1": Category.DOCUMENTATION,
    "fc00::1": Category.UNIQUE_LOCAL,
    "fd12:3456::1": Category.UNIQUE_LOCAL,
    "fe80::1": Category.LINK_LOCAL,
    "febf:ffff::1": Category.LINK_LOCAL,
    "fec0::1": Category.PRIVATE,
    "ff02::1": Category.MULTICAST,
    "ff0e::1": Category.MULTICAST,
    "4000::1": Category.RESERVED,  # outside global unicast
    "1fff:ffff::1": Category.RESERVED,
    "e000::1": Category.RESERVED,
}
PUBLIC_V6 = [
    "2606:4700:4700::1111",
    "2a00:1450:4001:81b::200e",
    "2001:200::1",  # just above 2001::/23
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "::ffff:8.8.8.8",
    "3ffe::1",
    "3fff:1000::1",  # just above 3fff::/20
]


@pytest.mark.parametrize(("address", "category"), [*REFUSED_V4.items(), *REFUSED_V6.items()])
def test_special_addresses_are_classified(address, category):
    assert classify(ip(address)) is category


@pytest.mark.parametrize("address", PUBLIC_V4 + PUBLIC_V6)
def test_public_addresses(address):
    assert classify(ip(address)) is Category.PUBLIC


def test_policies():
    assert LIVE.https_only and not LIVE.allow_loopback and LIVE.categories == {Category.PUBLIC}
    assert not TEST.https_only and TEST.allow_loopback and TEST.categories == {Category.PUBLIC, Category.LOOPBACK}
    assert Policy.for_account(True, test_loopback=False).categories == {Category.PUBLIC}
    assert Policy.for_account(False, test_loopback=True) == LIVE


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_ipv4_never_allows_what_the_standard_library_calls_non_global(value):
    address = ipaddress.IPv4Address(value)
    if classify(address) is Category.PUBLIC:
        assert address.is_global and not address.is_multicast, address


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_ipv6_is_default_deny(value):
    address = ipaddress.IPv6Address(value)
    if ssrf.embedded_ipv4(address) is not None:
        return  # decided by the embedded IPv4 address (next test)
    if classify(address) is Category.PUBLIC:
        assert address in ssrf.GLOBAL_UNICAST and address.is_global and not address.is_multicast, address


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_embedded_ipv4_forms_are_judged_by_the_ipv4_address(value):
    v4 = ipaddress.IPv4Address(value)
    mapped = ipaddress.IPv6Address((0xFFFF << 32) | value)
    nat64 = ipaddress.IPv6Address((0x64FF9B << 96) | value)
    six_to_four = ipaddress.IPv6Address((0x2002 << 112) | (value << 80) | 1)
    for form in (mapped, nat64, six_to_four):
        assert ssrf.embedded_ipv4(form) == v4
        assert classify(form) is classify(v4)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_loopback_is_the_only_difference_between_live_and_test(value):
    category = classify(ipaddress.IPv4Address(value))
    assert (category in LIVE.categories) == (category is Category.PUBLIC)
    assert (category in TEST.categories) == (category in (Category.PUBLIC, Category.LOOPBACK))


# -- URLs -----------------------------------------------------------------------------------------------
ACCEPTED = [
    ("https://8.8.8.8/hook", LIVE),
    ("https://[2606:4700:4700::1111]:8443/hook?x=1", LIVE),
    ("https://hooks.example.com/in", LIVE),  # a name: resolved later (sender.vet_target)
    ("https://hooks.example.com.:443/in", LIVE),
    ("http://127.0.0.1:8080/hook", TEST),
    ("http://[::1]:8080/hook", TEST),
    ("http://localhost:3000/hook", TEST),
    ("http://app.localhost/hook", TEST),
    ("HTTPS://8.8.8.8/", LIVE),
    ("http://[::ffff:127.0.0.1]/", TEST),
    ("https://bücher.example/hook", LIVE),
]
REFUSED = [
    ("http://8.8.8.8/hook", LIVE, "https://"),
    ("ftp://8.8.8.8/", TEST, "http:// or https://"),
    ("file:///etc/passwd", TEST, "http:// or https://"),
    ("gopher://127.0.0.1:6379/_", TEST, "http:// or https://"),
    ("https://127.0.0.1/", LIVE, "loopback"),
    ("https://[::1]/", LIVE, "loopback"),
    ("https://[::ffff:127.0.0.1]/", LIVE, "loopback"),
    ("https://localhost/", LIVE, "localhost"),
    ("https://LOCALHOST./", LIVE, "localhost"),
    ("https://api.localhost/", LIVE, "localhost"),
    ("http://10.0.0.1/", TEST, "private"),
    ("http://192.168.1.1:8080/", TEST, "private"),
    ("http://169.254.169.254/latest/meta-data/", TEST, "link-local"),
    ("http://[fe80::1%25eth0]/", TEST, "link-local"),
    ("http://100.64.0.1/", TEST, "carrier-grade NAT"),
    ("http://0.0.0.0:8000/", TEST, "unspecified"),
    ("http://[::]/", TEST, "unspecified"),
    ("http://[fd00::1]/", TEST, "unique local"),
    ("http://224.0.0.1/", TEST, "multicast"),
    ("http://255.255.255.255/", TEST, "broadcast"),
    ("http://[::ffff:10.0.0.1]/", TEST, "private"),
    ("http://[64:ff9b::a9fe:a9fe]/", TEST, "link-local"),
    ("http://2130706433/", TEST, "canonical"),
    ("http://127.1/", TEST, "canonical"),
    ("http://0177.0.0.1/", TEST, "canonical"),
    ("http://127.000.000.001/", TEST, "canonical"),
    ("http://127.0.0.1./", TEST, "canonical"),
    ("https://user:pass@8.8.8.8/", LIVE, "user name"),
    ("https://user@8.8.8.8/", LIVE, "user name"),
    ("https://8.8.8.8/#frag", LIVE, "fragment"),
    ("https://8.8.8.8/ a", LIVE, "spaces"),
    ("https://8.8.8.8\\@127.0.0.1/", LIVE, "backslashes"),
    ("https://8.8.8.8/\n", LIVE, "control"),
    ("https://8.8.8.8:0/", LIVE, "port"),
    ("https://8.8.8.8:99999/", LIVE, "valid URL"),
    ("https:///nohost", LIVE, "host"),
    ("/relative/path", TEST, "http:// or https://"),
    ("not a url", TEST, "spaces"),
    ("https://" + "a" * 2050 + ".com/", LIVE, "2048"),
]


@pytest.mark.parametrize(("url", "policy"), ACCEPTED)
def test_accepted_urls(url, policy):
    target = check_url(url, policy)
    assert target.host and target.port


@pytest.mark.parametrize(("url", "policy", "words"), REFUSED)
def test_refused_urls_say_why(url, policy, words):
    with pytest.raises(UrlRefused, match=words.replace("+", r"\+")):
        check_url(url, policy)


def test_without_loopback_for_test_mode_localhost_is_refused():
    strict = Policy.for_account(True, test_loopback=False)
    for url in ("http://127.0.0.1/", "http://localhost/", "http://[::1]/"):
        with pytest.raises(UrlRefused, match="loopback"):
            check_url(url, strict)
    assert check_url("http://8.8.8.8/", strict).port == 80


@pytest.mark.parametrize(
    ("addresses", "policy", "refused"),
    [
        (["8.8.8.8", "2606:4700:4700::1111"], LIVE, False),
        (["8.8.8.8", "10.0.0.1"], LIVE, True),  # one private answer refuses the name
        (["127.0.0.1", "::1"], TEST, False),
        (["127.0.0.1"], LIVE, True),
        (["127.0.0.1", "192.168.0.1"], TEST, True),
        ([], LIVE, True),
        (["not-an-ip"], TEST, True),
    ],
)
def test_a_name_is_allowed_only_if_every_address_is(addresses, policy, refused):
    if refused:
        with pytest.raises(UrlRefused):
            ssrf.vet_addresses("hooks.example.com", addresses, policy)
    else:
        ssrf.vet_addresses("hooks.example.com", addresses, policy)


def test_refusals_name_the_host_and_the_address():
    with pytest.raises(UrlRefused) as refused:
        ssrf.vet_addresses("rebind.example", ["93.184.216.34", "169.254.169.254"], LIVE)
    assert "rebind.example" in str(refused.value) and "169.254.169.254" in str(refused.value)
