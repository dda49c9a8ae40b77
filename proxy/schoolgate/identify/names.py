"""One spelling per person and per device: usernames and MAC addresses are normalised once, where
they enter Schoolgate, so proxy logins, the IP map, CSV files and LDAP all agree on who is who.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["login_name", "normalise_mac", "normalise_user"]

#: Longest username accepted anywhere (Active Directory's sAMAccountName allows 20, UPNs more).
MAX_USER_LENGTH = 256

_HEX = re.compile(r"[0-9a-f]{12}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def normalise_user(name: str) -> str:
    """The username Schoolgate records and looks up: ``SCHOOL\\Alice``, ``alice@school.example``
    and `` Alice `` all become ``alice``.

    Windows and Active Directory compare usernames without regard to case, and network systems
    send the same person in several forms (RADIUS and logon scripts ``DOMAIN\\user``, Azure AD
    and Google ``user@domain``), so the domain is dropped and the name lowercased. A trust whose
    schools share a gateway must therefore keep usernames unique across its domains.
    Raises ValueError for a name that is empty after this, too long, or holds control characters
    (which would let a feed forge lines in logs and reports).
    """
    text = unicodedata.normalize("NFC", name).strip()
    if "\\" in text:
        text = text.rsplit("\\", 1)[1]
    if "@" in text:
        text = text.rsplit("@", 1)[0]
    text = text.strip().lower()
    if not text:
        raise ValueError(f"{name!r} is not a username")
    if len(text) > MAX_USER_LENGTH:
        raise ValueError(f"username is longer than {MAX_USER_LENGTH} characters")
    if _CONTROL.search(text):
        raise ValueError(f"username {name!r} contains control characters")
    return text


def login_name(user: str) -> str | None:
    """The normalised username of a proxy login, or None when it is not a username (the login
    then names nobody rather than failing the request)."""
    try:
        return normalise_user(user)
    except ValueError:
        return None


def normalise_mac(text: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` from any common spelling: ``AA-BB-CC-DD-EE-FF`` (Windows),
    ``aabb.ccdd.eeff`` (Cisco), ``aa:bb:cc:dd:ee:ff`` or bare ``AABBCCDDEEFF``. Raises ValueError.
    """
    compact = text.strip().lower()
    for separator in ":-.":
        if separator in compact:
            parts = compact.split(separator)
            # Cisco groups four digits in three parts; the others two digits in six parts.
            if [len(p) for p in parts] not in ([2] * 6, [4] * 3):
                raise ValueError(f"{text!r} is not a MAC address")
            compact = "".join(parts)
            break
    if not _HEX.fullmatch(compact):
        raise ValueError(f"{text!r} is not a MAC address")
    return ":".join(compact[i:i + 2] for i in range(0, 12, 2))
