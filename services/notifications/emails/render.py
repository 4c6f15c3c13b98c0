"""Rendering e-mails from templates (HTML and plain text, per language), and the MIME message."""

from __future__ import annotations

import binascii
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


class Renderer:
    """``<language>/<template>.subject.txt``, ``.html`` (extends ``layout.html``; HTML
    escaped) and ``.txt`` (not escaped). Templates are read once (no reload checks: a
    deploy restarts the workers)."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=False,
            auto_reload=False,
        )
        self._templates: dict[tuple[str, str], tuple[jinja2.Template, jinja2.Template, jinja2.Template]] = {}

    def _get(self, template: str, language: str) -> tuple[jinja2.Template, jinja2.Template, jinja2.Template]:
        key = (template, language)
        found = self._templates.get(key)
        if found is None:
            get = self.env.get_template
            found = (
                get(f"{language}/{template}.subject.txt"),
                get(f"{language}/{template}.html"),
                get(f"{language}/{template}.txt"),
            )
            self._templates[key] = found
        return found

    def render(self, template: str, language: str, context: dict) -> Rendered:
        subject_t, html_t, text_t = self._get(template, language)
        subject = " ".join(subject_t.render(context).split())
        html = html_t.render(subject=subject, locale=language, **context)
        text = text_t.render(context)
        return Rendered(subject=subject, html=html, text=text)


@dataclass(frozen=True)
class OutgoingMessage:
    """A message as it goes on the wire: envelope sender and recipient, and its bytes."""

    sender: str
    recipient: str
    data: bytes


def build_message(
    *,
    sender: str,
    sender_name: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    sent_at: datetime,
) -> OutgoingMessage:
    """The MIME message (RFC 5322 / 2045–2047): ``multipart/alternative`` with the text
    and the HTML part, UTF-8, quoted-printable; non-ASCII header words as RFC 2047
    encoded-words, long headers folded. Written directly (binascii does the encoding):
    the ``email`` package's builder costs ~3 ms a message, ten times the rendering
    (TARGETS P6). The quoted-printable parts can never contain the boundary: it starts
    with "=_", which quoted-printable never writes."""
    boundary = f"=_{secrets.token_hex(16)}"
    head = "\r\n".join(
        [
            "From: " + _mailbox(sender_name, sender),
            "To: " + _header_text(recipient),
            "Subject: " + _fold(_encode_words(subject), len("Subject: ")),
            "Message-ID: " + _header_text(message_id),
            "Date: " + format_datetime(sent_at),
            "Auto-Submitted: auto-generated",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"',
            "",
            "",
        ]
    )
    data = b"".join(
        [
            head.encode("ascii"),
            _part(boundary, "text/plain", text),
            _part(boundary, "text/html", html),
            f"--{boundary}--\r\n".encode("ascii"),
        ]
    )
    return OutgoingMessage(sender=sender, recipient=recipient, data=data)


_PART_HEAD = 'Content-Type: {}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'


def _part(boundary: str, content_type: str, body: str) -> bytes:
    crlf = body.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    encoded = binascii.b2a_qp(crlf, quotetabs=False, istext=True, header=False)
    # b2a_qp ends its soft line breaks the way the data's first line ends — with a bare
    # LF when the body has no line break at all; on the wire every line ends in CRLF.
    encoded = encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return f"--{boundary}\r\n{_PART_HEAD.format(content_type)}".encode("ascii") + encoded + b"\r\n"


def _header_text(value: str) -> str:
    """No line breaks in a header value (they would start another header)."""
    return " ".join(value.split())


def _mailbox(name: str, address: str) -> str:
    cleaned = _header_text("".join(ch for ch in name if ch not in '"<>\\'))
    if not cleaned:
        return address
    if cleaned.isascii():
        return _fold(f'"{cleaned}" <{address}>', len("From: "))
    # One encoded-word for the whole name, as Python's own generator writes it: parsers
    # differ on the space between adjacent encoded-words inside a phrase.
    return f"=?utf-8?b?{binascii.b2a_base64(cleaned.encode('utf-8'), newline=False).decode('ascii')}?=\r\n <{address}>"


#: UTF-8 bytes per encoded-word: base64 of 39 bytes is 52 characters, 64 with "=?utf-8?b?…?=" —
#: a folded line of them stays within 76 characters (RFC 2047 §2).
_WORD_BYTES = 39


def _encode_words(value: str) -> str:
    """RFC 2047: ASCII text as it is; otherwise base64 encoded-words, each of whole
    characters (a chunk never ends inside a UTF-8 sequence)."""
    value = _header_text(value)
    if value.isascii():
        return value
    data, words, start = value.encode("utf-8"), [], 0
    while start < len(data):
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte: back off
            end -= 1
        words.append(f"=?utf-8?b?{binascii.b2a_base64(data[start:end], newline=False).decode('ascii')}?=")
        start = end
    return " ".join(words)


def _fold(value: str, used: int, width: int = 78) -> str:
    """Fold at spaces so lines stay within ``width`` where a space allows (RFC 5322 §2.2.3)."""
    if used + len(value) <= width:
        return value
    lines, line = [], ""
    for word in value.split(" "):
        if line and used + len(line) + 1 + len(word) > width:
            lines.append(line)
            line, used = word, 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)
