"""What to do about a failed poll, in the words of docs/troubleshooting.md: one hint per kind of
failure, found from the reason and the message a `PollError` carries.

Used by `--check-target` (each step that breaks), `/probe?debug=true`, and the landing page (each
target's last error), so that the three always say the same thing.
"""

from __future__ import annotations

import re

from exporter.errors import Reason

# (reason or None for any, a pattern of the message, the hint). The first match wins: the more
# particular patterns come first.
_HINTS: tuple[tuple[Reason | None, str, str], ...] = (
    ("connection", r"not trusted|certificate verify failed|unable to get local issuer",
     "the provider's certificate is not trusted: set tls.ca_file to the CA that issued it (PEM), "
     "or add that CA to the system bundle (update-ca-certificates); tls.verify: false only in a lab"),
    ("connection", r"[Hh]ostname mismatch|doesn't match|does not match",
     "the provider's certificate does not name the host configured: set host to a name the "
     "certificate holds (its subject or alternative names)"),
    ("connection", r"certificate has expired|expired",
     "the provider's certificate has expired: renew the WinRM listener's certificate on the provider"),
    (None, r"does not know the client principal|refused the password|refused the keytab|no account has the SPN"
           r"|clocks of|cannot reach a KDC|credential cache of the environment|refused the Kerberos ticket",
     "see the message: it names the client principal and the SPN; docs/windows-setup.md#kerberos"),
    ("connection", r"[Nn]ame or service not known|[Nn]o address associated|getaddrinfo|[Tt]emporary failure in name",
     "the host name does not resolve: check host and this machine's DNS"),
    ("connection", r"[Cc]onnection refused",
     "nothing listens there: check the WinRM listener on the provider (winrm enumerate "
     "winrm/config/listener), the port (5986 https, 5985 http) and the firewall"),
    ("connection", r"[Rr]eset|dropped|[Aa]borted|closed|[Bb]roken pipe|[Ee]mpty body",
     "the connection broke while the provider answered: a firewall or proxy cutting connections, "
     "or the WinRM service restarting; if it repeats, see the provider's Microsoft-Windows-WinRM/"
     "Operational event log"),
    ("timeout", r"connecting .* timed out|hang on connect",
     "the connection was not answered: a firewall dropping packets, or a wrong address"),
    ("timeout", r"",
     "the provider did not answer in time: compare sccm_poll_duration_seconds with timeout, and look "
     "at the provider's load (site backup, WSUS synchronisation, SQL maintenance)"),
    ("auth", r"client certificate|TLS alert",
     "the provider refused the client certificate: it must be issued by a CA the provider trusts, "
     "valid, and mapped to a local account (New-Item WSMan:\\localhost\\ClientCertificate)"),
    ("auth", r"[Aa]ccess denied|0x80041003|0x80070005",
     "the account lacks rights: add it to the local Remote Management Users group on the provider "
     "and give it a ConfigMgr role such as Read-only Analyst (which puts it in SMS Admins)"),
    ("auth", r"HTTP 401|rejected the credentials",
     "the provider refused the account: check username (DOMAIN\\user), the password (file, "
     "variable), whether the account is locked or its password expired; if NTLM is disabled by "
     "policy, use transport kerberos"),
    ("wmi_fault", r"invalid namespace|0x8004100E|wrong site_code",
     "wrong site_code: leave site_code out to find it from SMS_ProviderLocation, or use the code "
     "it shows"),
    ("wmi_fault", r"invalid class|0x80041010",
     "the class is not there: is this host an SMS Provider of that site, and does this ConfigMgr "
     "version have the class?"),
    ("wmi_fault", r"provider failure|0x80041001",
     "the SMS Provider failed: see smsprov.log on it, the WMI service (winmgmt) and the site database"),
    ("wmi_fault", r"[Qq]uota|0x803381A",
     "the account's WinRM operation quota is used up: lower parallel_enumerations, or raise "
     "MaxConcurrentOperationsPerUser on the provider"),
    ("wmi_fault", r"refused the WQL query|0x80041017",
     "the provider refused the query: please report it with a capture (--check-target NAME "
     "--record DIR --anonymize)"),
    ("parse", r"",
     "a reply the exporter could not read: please report it with a capture (--check-target NAME "
     "--record DIR --anonymize)"),
    ("other", r"HTTP 404|no WS-Management endpoint",
     "no WS-Management endpoint at /wsman: is host:port a WinRM listener?"),
    ("other", r"ProviderForLocalSite|set site_code",
     "no local site found in SMS_ProviderLocation: set site_code in the target's configuration"),
    ("other", r"max_rows", "the site has more rows than max_rows: raise it"),
)


def hint(reason: Reason | None, message: str | None) -> str | None:
    """What to do about a failure with this reason and message, or None when nothing is known."""
    text = message or ""
    for wanted, pattern, advice in _HINTS:
        if wanted is not None and wanted != reason:
            continue
        if re.search(pattern, text):
            return advice
    return None
