"""The client certificate of transport `certificate` (`tls.cert_file`, `tls.key_file`), as this host
sees it: whether it is valid now, what it is called, and whether its key file is kept private.

The provider's refusal of a certificate comes as a TLS alert that says little (`certificate
expired`, with no date); the exporter reads its own certificate before connecting and says
precisely what is wrong. Only the certificate is parsed; the key file is only looked at
(`os.stat`), never read.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("exporter.winrm")


@dataclass(frozen=True)
class ClientCertificate:
    path: str
    subject: str  # RFC 4514, e.g. CN=svc-cm-exporter
    not_before: datetime  # UTC
    not_after: datetime  # UTC

    def problem(self, now: datetime | None = None) -> str | None:
        """Why this certificate cannot be used now (expired, not yet valid), or None."""
        moment = now or datetime.now(UTC)
        if moment > self.not_after:
            return f"client certificate {self.path} ({self.subject}) expired on {when(self.not_after)}: renew it"
        if moment < self.not_before:
            return (f"client certificate {self.path} ({self.subject}) is not valid before "
                    f"{when(self.not_before)}: check this host's clock, or wait")
        return None


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def read_certificate(path: str) -> ClientCertificate:
    """The first certificate of a PEM file (a chain may follow it); ValueError when there is none."""
    from cryptography import x509

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read the client certificate {path}: {exc.strerror or exc}") from None
    try:
        cert = x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        raise ValueError(f"{path} holds no PEM certificate (tls.cert_file)") from None
    return ClientCertificate(path, cert.subject.rfc4514_string() or "(no subject)",
                             cert.not_valid_before_utc, cert.not_valid_after_utc)


def warn_if_key_readable(key_file: str | None, target: str) -> None:
    """A WARNING when the private key file can be read by group or others (POSIX only); never fails."""
    if key_file is None or os.name != "posix":
        return
    try:
        mode = stat.S_IMODE(os.stat(key_file).st_mode)
    except OSError:
        return  # a missing file fails the poll with its own message
    if mode & 0o077:
        log.warning("the client certificate's key file can be read by others than its owner",
                    extra={"target": target, "file": key_file, "mode": f"{mode:04o}",
                           "hint": f"chmod 600 {key_file}"})
