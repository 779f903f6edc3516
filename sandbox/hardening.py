"""What every entry point of the product sets up, and the transport rule for credentials.

Entry points (the ``sandbox`` CLI, every flow, the served deployments) call
:func:`harden_process` first:

* **private files** -- the process umask becomes ``077``, so everything the
  product and the tools it runs create (terraform state and its backup, which hold
  cluster credentials; the inventory database; checkouts, results, reports) is
  ``0600`` in ``0700`` directories. Set here, never assumed from the user's shell
  or the worker's service manager.
* **redacted logs** -- :func:`sandbox.redaction.install_log_redaction` on the
  product's and Prefect's loggers.

:func:`check_credentials_transport` refuses to send a token over plain HTTP to
anything but this machine.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from sandbox.errors import ConfigError
from sandbox.redaction import install_log_redaction, redact_url

#: The umask of every product process: no group or other permission on anything it creates.
PRIVATE_UMASK = 0o077

#: Host names that stay on this machine (tests and local registries run there).
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def harden_process() -> None:
    """Private files and redacted logs for this process (idempotent; see the module docstring)."""
    os.umask(PRIVATE_UMASK)
    install_log_redaction()


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and directories made inside are their owner's only, whatever the process's umask (restored after).

    For product functions a library caller may run in a process that :func:`harden_process` did not set up.
    """
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def private_directory(path: Path) -> Path:
    """Make ``path`` (and missing parents) a directory only its owner can enter, whatever the umask.

    An existing directory made by an earlier version (``0755``) is tightened too.

    Returns:
        ``path``.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & 0o700)
    return path


def private_file(path: Path) -> None:
    """Take group and other permissions off an existing file (a secret store made by an earlier version)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        path.chmod(mode & 0o700)


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` names this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if not host:
        return False
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_credentials_transport(url: str, setting: str, *, plain_http: bool | None = None) -> None:
    """Refuse a plain-HTTP URL that a token or password would be sent to, unless it is this machine.

    Args:
        url: Where the credential would go.
        setting: The configuration key naming ``url``, for the message.
        plain_http: Whether the connection is plain HTTP; ``None``: from the URL's scheme.

    Raises:
        ConfigError: Plain HTTP to another machine (exit 2, nothing sent).
    """
    parts = urlsplit(url if "://" in url else f"//{url}")
    insecure = parts.scheme == "http" if plain_http is None else plain_http
    if insecure and not is_loopback(parts.hostname):
        raise ConfigError(
            f"{setting} {redact_url(url)} is plain HTTP: refusing to send credentials in clear text "
            "(use https; plain HTTP is only allowed to this machine)"
        )
