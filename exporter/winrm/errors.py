"""What a failure to talk to the provider means: a `PollError` reason and a message an administrator
can act on, for everything but a SOAP fault (`exporter.winrm.faults` reads those).
"""

from __future__ import annotations

import ssl

import requests
from winrm.exceptions import InvalidCredentialsError, WinRMError, WinRMTransportError

from exporter.config import TargetConfig
from exporter.errors import PollError
from exporter.winrm.envelopes import clean_text


def where(target: TargetConfig) -> str:
    return f"{target.host}:{target.port}"


def transport_error(exc: Exception, target: TargetConfig, what: str) -> PollError:
    """The reason and an actionable message for anything but a fault; `what` names the request."""
    at = where(target)
    if isinstance(exc, PollError):
        return exc
    if isinstance(exc, InvalidCredentialsError):
        user = target.auth.username or "(certificate)"
        return PollError("auth", f"{at} rejected the credentials of {user} (HTTP 401, {what})")
    if isinstance(exc, requests.exceptions.SSLError):
        return _tls_error(exc, target)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return PollError("timeout", f"connecting to {at} timed out ({what})")
    if isinstance(exc, requests.exceptions.Timeout):
        return PollError("timeout", f"{at} did not answer in time ({what})")
    if isinstance(exc, requests.exceptions.RequestException):
        return PollError("connection", f"cannot talk to {at}: {short(exc)} ({what})")
    if isinstance(exc, WinRMTransportError):
        return _http_error(exc.code, at, what)
    if isinstance(exc, WinRMError):
        return PollError("other", f"WinRM error talking to {at}: {short(exc)} ({what})")
    return PollError("other", f"{type(exc).__name__} talking to {at}: {short(exc)} ({what})")


def _tls_error(exc: Exception, target: TargetConfig) -> PollError:
    root = _root_cause(exc)
    if isinstance(root, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        detail = getattr(root, "verify_message", None) or "certificate verify failed"
        return PollError(
            "connection",
            f"TLS certificate of {target.host} not trusted ({detail}): set tls.ca_file to the CA "
            "that issued it, or tls.verify: false",
        )
    return PollError("connection", f"TLS handshake with {where(target)} failed: {short(exc)}")


def connection_dropped(exc: Exception) -> bool:
    """The failures a resend on a new connection can cure (not TLS, not timeouts)."""
    if isinstance(exc, WinRMTransportError):
        return exc.code == 400 and not (exc.response_text or "").strip()
    if isinstance(exc, requests.exceptions.SSLError | requests.exceptions.Timeout):
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError)


def _http_error(status: int, where: str, what: str) -> PollError:
    if status in (401, 403):
        return PollError("auth", f"{where} refused access (HTTP {status}, {what})")
    if status == 400:
        return PollError(
            "connection", f"{where} answered HTTP 400 with no body: the connection's session was lost ({what})"
        )
    if status in (408, 502, 503, 504):
        return PollError("connection", f"{where} or a proxy on the way is unavailable (HTTP {status}, {what})")
    if status == 404:
        return PollError("other", f"no WS-Management endpoint at {where}/wsman (HTTP 404)")
    return PollError("other", f"{where} answered HTTP {status} ({what})")


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error under requests/urllib3 wrappers (ConnectionRefusedError, SSL errors...)."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        reason = getattr(current, "reason", None)
        inner = next((arg for arg in current.args if isinstance(arg, BaseException)), None)
        following = inner or (reason if isinstance(reason, BaseException) else None) or current.__cause__
        if following is None:
            break
        current = following
    return current


def short(exc: BaseException) -> str:
    """An exception in a few words for a log line or a message: never a whole body."""
    if isinstance(exc, WinRMTransportError):
        return f"HTTP {exc.code}" + ("" if (exc.response_text or "").strip() else " with an empty body")
    root = _root_cause(exc)
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    return clean_text(str(root) or type(root).__name__)
