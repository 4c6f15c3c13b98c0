"""The MIME message notifications writes (`render.build_message`) reads back, through
Python's own mail parser (strict policy), as exactly what was given: headers (encoded
words, folding, no injected lines), both parts, any text."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifications.emails.render import build_message

STRICT = policy.default.clone(raise_on_defect=True)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t"), max_size=400)
HEADER = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=200)


def parse(data: bytes):
    return BytesParser(policy=STRICT).parsebytes(data)


def build(**changes):
    values = {
        "sender": "receipts@commerce.localhost",
        "sender_name": "Acme Coffee",
        "recipient": "jane@example.com",
        "subject": "Your receipt",
        "text": "Hello\n",
        "html": "<p>Hello</p>\n",
        "message_id": "<email_1@commerce.localhost>",
        "sent_at": datetime(2027, 3, 1, 12, tzinfo=UTC),
    }
    return build_message(**{**values, **changes})


@settings(max_examples=200, deadline=None)
@given(subject=HEADER, name=HEADER, text=TEXT, html=TEXT)
def test_whatever_is_written_reads_back(subject, name, text, html):
    message = build(subject=subject, sender_name=name, text=text, html=html)
    assert all(len(line) <= 998 for line in message.data.split(b"\r\n"))
    msg = parse(message.data)
    assert str(msg["Subject"]).strip() == " ".join(subject.split())
    shown = " ".join("".join(ch for ch in name if ch not in '"<>\\').split())
    assert msg["From"].addresses[0].display_name == shown
    assert msg["From"].addresses[0].addr_spec == "receipts@commerce.localhost"
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == text.replace("\r\n", "\n")
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == html.replace("\r\n", "\n")


def test_the_message_and_its_headers():
    message = build(
        subject="Ditt kvitto från Acme Coffee (1\xa0500,00\xa0kr, betalning 3 av 12) — en rad som viks " * 2,
        text="Tack!\n",
    )
    assert (message.sender, message.recipient) == ("receipts@commerce.localhost", "jane@example.com")
    head = message.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert all(len(line) <= 78 for line in head.split("\r\n")), head
    msg = parse(message.data)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in msg.iter_parts())
    assert msg["Message-ID"] == "<email_1@commerce.localhost>" and msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"].datetime == datetime(2027, 3, 1, 12, tzinfo=UTC)
    assert msg["MIME-Version"] == "1.0"


def test_a_header_cannot_be_injected():
    msg = parse(build(subject="Hi\r\nBcc: evil@example.com", sender_name="Evil\nBcc: x@example.com").data)
    assert msg["Bcc"] is None
    assert str(msg["Subject"]) == "Hi Bcc: evil@example.com"
