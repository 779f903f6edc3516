"""The one place secret values are known and taken out of text.

A secret reaches output in ways no call site can foresee: a git host that echoes
the ``Authorization`` header into its error body, terraform printing a value of
its state, a tool that dumps its environment. So secrets are not redacted per
call site but at the few places text leaves the process, against one
process-wide registry of every secret value the product holds:

* **registering** -- the code calls :func:`register_secret` the moment it reads a
  secret: a Prefect Secret block or environment variable (``tasks.common``,
  ``sandbox.config`` for every variable a configuration names), a token in a URL,
  registry credentials, terraform's sensitive outputs and secret variables, a
  kubeconfig (:func:`register_kubeconfig` takes its keys, certificates, tokens and
  passwords apart). Each value is registered with the forms it takes in output:
  as written, whitespace-collapsed (one-line messages), line by line (a PEM key),
  URL-quoted and base64-encoded (HTTP basic auth, Kubernetes Secret ``data``).
* **redacting** -- :func:`redact` replaces every registered form with ``***``.
  It is applied by :class:`~sandbox.errors.SandboxError` (its message, ``str``,
  ``repr`` and pickled form: what Prefect turns into state messages, logs and
  persisted results), :func:`sandbox.proc.tail` (what an external command printed,
  as errors quote it; the output a caller parses is data and stays as it is),
  :class:`RedactingFilter` (every log record of the product's and Prefect's
  loggers, so the run logger and the API log handler only see redacted text), the
  CLI's printer and the inventory's stored errors.

Prefect-free, and it imports nothing of the product: ``sandbox.errors`` and the
drivers depend on it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, overload
from urllib.parse import quote, unquote, urlsplit

import yaml

#: What a secret is replaced with.
MASK = "***"

#: Shorter values are not registered: they would blank out ordinary words (a
#: secret that short protects nothing anyway).
MIN_SECRET_LENGTH = 6

#: A line of a multi-line secret (a PEM body line) is registered on its own from
#: this length: one-line messages break such a secret apart.
MIN_LINE_LENGTH = 16

#: The user info of a URL with an authority: everything between "://" and the
#: last "@" before the host (a password may itself hold an "@").
_URL_CREDENTIALS = re.compile(r"(://)[^/?#\s]*@")

_lock = threading.Lock()
_values: set[str] = set()
#: Longest first, so a secret containing another is replaced whole.
_ordered: tuple[str, ...] = ()


def _forms(value: str) -> set[str]:
    """The forms a secret takes in output (see the module docstring)."""
    forms = {value, value.strip(), " ".join(value.split()), quote(value, safe="")}
    forms.add(base64.b64encode(value.encode("utf-8")).decode("ascii"))
    if "\n" in value.strip():
        for line in value.splitlines():
            line = line.strip()
            # A PEM armour line names the kind of key, it is not secret.
            if len(line) >= MIN_LINE_LENGTH and not line.startswith("-----"):
                forms.add(line)
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def register_secret(value: object) -> None:
    """Remember a secret value (and the forms it takes in output) for every later redaction.

    Args:
        value: The secret; ``None``, non-strings and values shorter than
            :data:`MIN_SECRET_LENGTH` are ignored.
    """
    global _ordered
    if not isinstance(value, str) or len(value.strip()) < MIN_SECRET_LENGTH:
        return
    forms = _forms(value)
    with _lock:
        if forms <= _values:
            return
        _values.update(forms)
        _ordered = tuple(sorted(_values, key=len, reverse=True))


def register_secrets(values: Iterable[object]) -> None:
    """:func:`register_secret` for each of ``values``."""
    for value in values:
        register_secret(value)


def register_basic_auth(username: str | None, password: str | None) -> None:
    """Register a password and the ``Authorization: Basic`` value it travels in.

    Args:
        username: The user name (not secret itself).
        password: The password or token.
    """
    if not password:
        return
    register_secret(password)
    register_secret(base64.b64encode(f"{username or ''}:{password}".encode()).decode("ascii"))


def register_url_credentials(url: str | None) -> None:
    """Register the password (or token) a URL carries in its user info (``https://user:token@host``)."""
    if not url or "@" not in url:
        return
    try:
        parts = urlsplit(url)
        password, username = parts.password, parts.username
    except ValueError:
        return
    if password:
        register_basic_auth(unquote(username or ""), unquote(password))
        register_secret(password)
    elif username and parts.scheme in ("http", "https"):
        register_secret(unquote(username))  # a token as the user name (https://TOKEN@host)
        register_secret(username)


#: Keys of a kubeconfig ``user`` (and ``cluster``) entry holding credentials.
_KUBECONFIG_SECRET_KEYS = (
    "token",
    "password",
    "client-key-data",
    "client-certificate-data",
    "client-key",
    "client-certificate",
)


def _decoded(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def register_kubeconfig(text: str | None) -> None:
    """Register a kubeconfig as a whole and every credential inside it.

    The whole text, and for each user its token, password, client key and
    certificate (the ``-data`` fields both base64 and decoded, so a PEM key shows
    as ``***`` line by line too), and exec/auth-provider settings' values. A text
    that is not a kubeconfig is still registered whole.
    """
    if not text:
        return
    register_secret(text)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    if not isinstance(document, Mapping):
        return
    for entry in document.get("users") or []:
        user = entry.get("user") if isinstance(entry, Mapping) else None
        if not isinstance(user, Mapping):
            continue
        for key in _KUBECONFIG_SECRET_KEYS:
            value = user.get(key)
            if not isinstance(value, str):
                continue
            register_secret(value)
            if key.endswith("-data"):
                register_secret(_decoded(value))
        provider = user.get("auth-provider")
        config = provider.get("config") if isinstance(provider, Mapping) else None
        if isinstance(config, Mapping):
            register_secrets(v for k, v in config.items() if "token" in str(k) or "secret" in str(k))


def registered() -> tuple[str, ...]:
    """Every registered form, longest first (for checks and tests)."""
    return _ordered


def forget_all() -> None:
    """Forget every registered secret (tests only: a process never un-learns a secret)."""
    global _ordered
    with _lock:
        _values.clear()
        _ordered = ()


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered secret (and each of ``extra``) replaced by ``***``.

    Args:
        text: Any text about to leave the process.
        extra: More secret values known only to the caller (registered as well).
    """
    extras = [value for value in extra if value]
    if extras:
        register_secrets(extras)
    if not text:
        return text
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    # A value too short to register may still be a caller's known secret.
    for secret in extras:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


@overload
def redact_url(url: str) -> str: ...


@overload
def redact_url(url: None) -> None: ...


def redact_url(url: str | None) -> str | None:
    """``url`` (or any text holding URLs) without the credentials they embed, and redacted.

    ``https://user:secret@host/`` and ``https://token@host/`` become
    ``https://***@host/`` (``ssh://git@host`` -> ``ssh://***@host``); URLs without
    user info, local paths and scp-style ``git@host:path`` addresses keep their
    shape; ``None`` and ``""`` are returned as they are.
    """
    if not url:
        return url
    return redact(_URL_CREDENTIALS.sub(r"\1" + MASK + "@", url))


def redact_value(value: Any) -> Any:
    """``value`` with :func:`redact` applied to every string in it (dicts, lists, tuples: recursively)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item) for item in value)
    return value


class RedactingFilter(logging.Filter):
    """Redact a log record in place before any handler formats it.

    The message is formatted once (``msg % args``) and replaced by its redacted
    form; an exception's traceback is formatted and redacted into ``exc_text``,
    which every ``logging.Formatter`` uses instead of formatting the exception
    again. Never drops a record.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` and keep it."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's business, not ours
            return True
        redacted = redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            text = record.exc_text or self._formatter.formatException(record.exc_info)
            record.exc_text = redact(text)
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()

#: Loggers the product logs to, besides every ``prefect`` logger.
PRODUCT_LOGGERS = ("", "fleet_sandbox", "sandbox", "tasks", "flows", "cli")


def install_log_redaction() -> None:
    """Install :class:`RedactingFilter` on the product's and Prefect's loggers and their handlers.

    On the loggers, for records logged to them (Prefect's flow- and task-run
    loggers log to ``prefect.flow_runs`` and ``prefect.task_runs``); on their
    handlers too, for records propagated from child loggers (a logger's own
    filters are not consulted for those). Idempotent; call it again after Prefect
    set up its logging (its handlers are made when it is imported).
    """
    names = [*PRODUCT_LOGGERS, *(n for n in list(logging.root.manager.loggerDict) if n.startswith("prefect"))]
    names += ["prefect", "prefect.flow_runs", "prefect.task_runs"]
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
