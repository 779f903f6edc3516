"""Git URLs as Flux reads them: which ``spec.url`` a GitRepository accepts, scp-style addresses, user info.

Prefect-free and below the configuration (:mod:`sandbox.config` validates fleet.yaml's
URLs with it).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: What Flux's GitRepository CRD accepts in ``spec.url`` (its OpenAPI schema's pattern).
FLUX_GIT_URL_PATTERN = r"^(http|https|ssh)://.*$"
#: Applied with ``fullmatch`` (Kubernetes' ``$`` is the end of the text; Python's also matches before a final newline).
_FLUX_GIT_URL = re.compile(FLUX_GIT_URL_PATTERN.removeprefix("^").removesuffix("$"))
_SCP_STYLE = re.compile(r"(?P<user>[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>(?!//).+)")


def without_userinfo(url: str) -> str:
    """``url`` without a ``user:password@`` part (local paths and scp-style addresses unchanged)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def is_flux_git_url(value: str) -> bool:
    """Whether Flux's GitRepository CRD accepts ``value`` as ``spec.url`` (http, https or ssh URL)."""
    return bool(_FLUX_GIT_URL.fullmatch(value))


def is_scp_style(value: str) -> bool:
    """Whether ``value`` is an scp-style git address (``git@host:org/repo.git``), which Flux refuses."""
    return "://" not in value and bool(_SCP_STYLE.fullmatch(value)) and not re.match(r"^[A-Za-z]:[\\/]", value)


def scp_to_ssh_url(value: str) -> str:
    """The ``ssh://`` form of an scp-style address: ``git@host:org/repo.git`` -> ``ssh://git@host/org/repo.git``."""
    match = _SCP_STYLE.fullmatch(value)
    if match is None:
        return value
    return f"ssh://{match['user'] or ''}{match['host']}/{match['path'].lstrip('/')}"


def flux_url_problem(value: str) -> str | None:
    """Why Flux on a real cluster cannot fetch from ``value`` (``None`` when it can).

    One phrase, suggesting the ``ssh://`` form for an scp-style address.
    """
    if is_flux_git_url(value):
        return None
    if is_scp_style(value):
        return (
            f"{value!r} is an scp-style address, which Flux's GitRepository refuses (spec.url must match "
            f"{FLUX_GIT_URL_PATTERN}); use {scp_to_ssh_url(value)!r}"
        )
    if "://" in value:
        return (
            f"{value!r} is not an http, https or ssh URL "
            f"(Flux's GitRepository spec.url must match {FLUX_GIT_URL_PATTERN})"
        )
    return (
        f"{value!r} is a local path, which Flux on a real cluster cannot fetch "
        f"(spec.url must be an http, https or ssh URL)"
    )
