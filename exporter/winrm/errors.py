"""What a failure to talk to the provider means: a `PollError` reason and a message an administrator
can act on, for everything but a SOAP fault (`exporter.winrm.faults` reads those).
"""

from __future__ import annotations

import contextlib
import re
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
        if target.auth.transport == "certificate":
            return PollError(
                "auth",
                f"{at} mapped the client certificate {_certificate_name(target)} to no account (HTTP 401, {what}): "
                "map it on the provider with New-Item WSMan:\\localhost\\ClientCertificate -Subject <its UPN> "
                "-Issuer <CA thumbprint>",
            )
        user = target.auth.username or "(certificate)"
        return PollError("auth", f"{at} rejected the credentials of {user} (HTTP 401, {what})")
    if type(exc).__module__.startswith("requests_credssp"):
        return _credssp_error(exc, target, what)
    if isinstance(exc, requests.exceptions.SSLError) or (
        isinstance(exc, requests.exceptions.RequestException) and isinstance(_root_cause(exc), ssl.SSLError)
    ):
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


def _credssp_error(exc: Exception, target: TargetConfig, what: str) -> PollError:
    """requests-credssp's exceptions (2.0.0): an NTSTATUS in the server's TSRequest (a refused
    logon), a server without CredSSP, or a 401 where the exchange expected its next token."""
    at, user = where(target), target.auth.username
    text = str(exc)
    status = getattr(exc, "status", None)
    if type(exc).__name__ == "NTStatusException" and isinstance(status, int):
        name = re.search(r"\) (\w+) 0x", text)
        meaning = _NTSTATUS.get(status, "")
        return PollError("auth", f"{at} rejected the credentials of {user} (CredSSP: "
                                 f"{name.group(1) if name else 'NTSTATUS'} 0x{status:08X}{meaning}, {what})")
    if "did not response CredSSP being an available" in text:
        return PollError("auth", f"{at} does not offer CredSSP (HTTP 401, {what}): enable it on the provider with "
                                 "Enable-WSManCredSSP -Role Server, or use another auth.transport")
    if "after step Credential exchange" in text:
        return PollError("auth", f"{at} refused the credentials of {user} delegated over CredSSP (HTTP 401 after "
                                 f"the credential exchange, {what}): the account may not log on there, or over "
                                 "http the provider refuses unencrypted messages (message_encryption: never)")
    step = re.search(r"after step ([\w .]+?) - actual", text)
    return PollError("auth", f"CredSSP authentication with {at} failed"
                             f"{f' after step {step.group(1)}' if step else ''}: {type(exc).__name__} ({what})")


# NTSTATUS codes a Windows CredSSP acceptor sends in its TSRequest, as an administrator reads them.
_NTSTATUS = {
    0xC000006D: ": wrong user name or password",
    0xC000006E: ": account restriction",
    0xC000006F: ": outside the account's logon hours",
    0xC0000070: ": not allowed from this workstation",
    0xC0000071: ": the password expired",
    0xC0000072: ": the account is disabled",
    0xC0000234: ": the account is locked out",
}

# OpenSSL's alerts from a provider that refused the client certificate (with TLS 1.3 they arrive
# after the handshake, when the reply is read) and what they mean; {cert} names the certificate.
_CLIENT_CERTIFICATE_ALERTS = (
    ("alert certificate required", "requires a TLS client certificate and none was sent"),
    ("alert unknown ca", "refused the client certificate {cert}: not issued by a CA the server trusts"),
    ("alert certificate expired", "refused the client certificate {cert} as expired"),
    ("alert certificate revoked", "refused the client certificate {cert}: revoked"),
    ("alert bad certificate", "refused the client certificate {cert} as bad"),
    ("alert unsupported certificate", "refused the client certificate {cert}: a kind it does not accept"),
    ("alert certificate unknown", "refused the client certificate {cert}"),
    ("alert access denied", "refused the client certificate {cert}: access denied"),
)


def _certificate_name(target: TargetConfig) -> str:
    """The client certificate as a message names it: its subject and file (never the key)."""
    from exporter.winrm.clientcert import read_certificate

    path = target.tls.cert_file or "(no tls.cert_file)"
    try:
        return f"{read_certificate(path).subject} ({path})"
    except ValueError:
        return path


def _client_certificate_error(text: str, target: TargetConfig) -> PollError | None:
    """A provider's TLS alert about the client certificate (or possibly about it), said plainly;
    None for other TLS errors."""
    at, lowered = where(target), text.lower()
    if "key values mismatch" in lowered:
        return PollError("auth", f"tls.key_file {target.tls.key_file} is not the key of tls.cert_file "
                                 f"{target.tls.cert_file}")
    if "alert handshake failure" in lowered and target.auth.transport != "certificate":
        # TLS 1.2 has no "certificate required": a server that requires one says this, as it does
        # when the two sides share no protocol version or cipher.
        return PollError("connection", f"{at} refused the TLS handshake (TLS alert handshake failure): no protocol "
                                       "version or cipher in common, or it requires a client certificate "
                                       "(auth.transport certificate)")
    for alert, meaning in _CLIENT_CERTIFICATE_ALERTS:
        if alert not in lowered:
            continue
        message = f"{at} {meaning.format(cert=_certificate_name(target))} (TLS {alert})"
        if alert == "alert certificate required":
            message += ": use auth.transport certificate with tls.cert_file and tls.key_file"
        if alert == "alert certificate expired" and target.tls.cert_file:
            from exporter.winrm.clientcert import read_certificate, when

            with contextlib.suppress(ValueError):
                valid_until = when(read_certificate(target.tls.cert_file).not_after)
                message += f"; by this host's clock it is valid until {valid_until}: compare the clocks"
        return PollError("auth", message)
    return None


def _tls_error(exc: Exception, target: TargetConfig) -> PollError:
    root = _root_cause(exc)
    refused = _client_certificate_error(f"{exc} {root}", target)
    if refused is not None:
        return refused
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
    if isinstance(_root_cause(exc), ssl.SSLError):
        return False  # a TLS alert (such as a refused client certificate) read as the connection broke
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
