"""Keeping credentials out of what is shown: URLs printed in messages, reports and stored settings.

(Known secret *values* are redacted from command lines and output by
:func:`sandbox.proc.redact`.)
"""

from __future__ import annotations

import re
from typing import overload

# The user info of a URL with an authority: everything between "://" and the
# last "@" before the host (a password may itself hold an "@").
_URL_USERINFO = re.compile(r"(://)[^/?#\s]*@")


@overload
def redact_url(url: str) -> str: ...


@overload
def redact_url(url: None) -> None: ...


def redact_url(url: str | None) -> str | None:
    """``url`` without the credentials it may embed (``https://user:token@host/`` -> ``https://***@host/``).

    Only the user info is replaced (``ssh://git@host`` -> ``ssh://***@host``); URLs
    without one, local paths and scp-style ``git@host:path`` addresses are returned
    as they are, and so are ``None`` and ``""``.
    """
    if not url:
        return url
    return _URL_USERINFO.sub(r"\1***@", url)
