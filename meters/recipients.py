"""Alert recipients: ``<channel>:<address>`` with a language, as contacts name them.

A contact is written ``relation:channel:address`` with an optional ``@language`` suffix
(``daughter:wechat:o6_bmjrPTlm6_2sgVt7hMZOPfL2M@zh-CN``, ``self:sms:+8613800000001``,
``son:email:li@example.com@en``). The channel is a configured delivery channel's name (``meters
channels add``); a bare address (``13800000001``, the older form) is read as ``sms:<address>``. The
language is ``zh-CN`` (the default) or ``en``. ``operator`` is the operator channel's recipient and
``account:<id>`` stands for an account without contacts (kept in the lake, never delivered).
"""
from __future__ import annotations

from .errors import MetersError

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
OPERATOR = "operator"
DEFAULT_CHANNEL = "sms"
NO_CONTACT = "account:"


def language(value: str | None) -> str:
    """``value`` as one of :data:`LANGUAGES` (None or empty: the default; case-insensitive)."""
    if not value:
        return DEFAULT_LANGUAGE
    for lang in LANGUAGES:
        if value.strip().lower() in (lang.lower(), lang.split("-")[0].lower()):
            return lang
    raise MetersError(f"language {value!r} must be one of {', '.join(LANGUAGES)}")


def split_language(recipient: str) -> tuple[str, str | None]:
    """(recipient, language) of ``recipient[@language]``; an ``@`` followed by something that is not
    a language (an e-mail address' domain) stays part of the recipient."""
    head, sep, tail = recipient.rpartition("@")
    if sep and head:
        try:
            return head, language(tail)
        except MetersError:
            pass
    return recipient, None


def parse_contact(spec: str) -> tuple[str, str, str | None]:
    """(relation, recipient, language or None) of a contact ``relation:recipient[@language]``."""
    rel, sep, rest = spec.strip().partition(":")
    recipient, lang = split_language(rest.strip())
    if not sep or not rel.strip() or not recipient:
        raise MetersError(f"contact {spec!r} must be relation:channel:address[@language]")
    channel_of(recipient)
    return rel.strip(), recipient, lang


def channel_of(recipient: str) -> str | None:
    """The delivery channel of ``recipient`` (None: ``account:<id>``, nobody to deliver to)."""
    if recipient == OPERATOR:
        return OPERATOR
    if recipient.startswith(NO_CONTACT):
        return None
    channel, sep, address = recipient.partition(":")
    if not sep:
        return DEFAULT_CHANNEL
    if not channel or not address:
        raise MetersError(f"recipient {recipient!r} must be channel:address")
    return channel


def address_of(recipient: str) -> str:
    """The address part of ``recipient`` (the whole of a bare address)."""
    channel, sep, address = recipient.partition(":")
    return address if sep else recipient
