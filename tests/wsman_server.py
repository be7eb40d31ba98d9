r"""A WS-Management (WinRM) test server that behaves like a Windows SMS Provider on the wire.

Why: there is no Windows host in CI and no maintained Python WS-Management server, yet the
exporter's WinRM client must be tested against what Windows really does -- Enumerate/Pull paging
with a context that changes on every response, ~75 KB pages however large the envelope, NTLM and
CredSSP with HTTP message encryption, channel binding, client certificates mapped to accounts,
SOAP faults shaped like the WMI plugin's.  This module reproduces that,
following [MS-WSMV] and public captures of Windows replies, so real pywinrm (``winrm.protocol.Protocol``) can talk
to it over loopback.  It is test code: it serves only 127.0.0.1/::1 and keeps everything in memory.

Quick use::

    from datasets import three_site_dataset   # tests/ is on sys.path under pytest
    with WSManServer(three_site_dataset(), users={"CORP\\svc": "pw"}) as srv:
        proto = winrm.protocol.Protocol(srv.url, transport="ntlm", username="CORP\\svc",
                                        password="pw", proxy=None)
        proto.send_message(envelope_xml)
        assert srv.requests[0].encrypted

Constructor (all keyword-only except ``dataset``):
    dataset                 namespace (``root\SMS\site_ABC``) -> class -> list of row dicts; see
                            tests/datasets.py.  Namespaces and classes match case-insensitively.
    users                   ``{"DOMAIN\\user" or "user": password}``; default ``DEFAULT_USERS``.
    auth                    schemes offered: any of ``"basic"``, ``"ntlm"``, ``"credssp"``,
                            ``"certificate"`` (default basic and ntlm); see "Authentication".
    denied_users            users that authenticate but get WMI access denied (0x80041003) on
                            ``root\SMS...`` namespaces.
    host, port              bind address (default 127.0.0.1, port 0 = a free port).
    tls                     serve HTTPS; ``cert`` = (cert_path, key_path) or None to mint a
                            throwaway self-signed one (``ca_file`` then names it for the client).
    allow_unencrypted       accept unencrypted SOAP bodies over plain http (default True, unlike
                            Windows' default, so Basic-over-http tests work).  When False, such a
                            request gets HTTP 401 as Windows answers it.
    cbt                     over HTTPS, WinRM's CbtHardeningLevel for NTLM channel binding
                            tokens: ``"relaxed"`` (default, as Windows), ``"strict"`` or ``"none"``
                            (True/False mean relaxed/none); see "Authentication".
    client_ca               with ``auth`` "certificate" (and ``tls``): PEM file of the CA(s) whose
                            client certificates the TLS layer accepts (``make_ca``).
    cert_mappings           ``CertMapping(subject, issuer, user)`` entries: which client
                            certificates log on as which user (see "Authentication").
    tls_max                 highest TLS version, ``"1.2"`` (as Windows Server 2019 and older) or
                            ``"1.3"``; default: what OpenSSL offers (1.3).  Under TLS 1.2 a
                            refused client certificate fails the handshake itself, and a missing
                            one is ``handshake failure`` (TLS 1.2 has no ``certificate required``).
    first_batch             items in an optimized EnumerateResponse (default 1, as Windows).
    page_bytes              cap on the item bytes of one page (default 75 KiB).
    max_envelope_size       server MaxEnvelopeSize in bytes (default 512000); the request's
                            ``w:MaxEnvelopeSize`` is clamped to it.
    max_batch_items         server MaxBatchItems (default 32000); clamps MaxElements.
    context_ttl             seconds an enumeration context lives after its last response (60).
    max_concurrent_enumerations  open contexts per user before the QuotaLimit fault (1500).
    machine                 the name put in fault ``Machine=`` attributes.

Attributes and methods:
    url, port, ca_file      where to connect (``http://127.0.0.1:PORT/wsman``) / CA to trust.
    start(), stop()         also a context manager.  stop() wakes every hanging handler, closes
                            every connection and returns promptly.
    requests                a copy of the request log (``RequestRecord`` list, SOAP requests only:
                            the empty authentication POSTs are not logged); clear_requests().
    set_dataset(d), set_rows(namespace, class_name, rows)   replace data (new enumerations only).
                            Rendered instances and WQL selections are cached until the data is
                            replaced, so that polling a million rows again costs little here.
    remove_class(namespace, class_name)   the class no longer exists there, as on a provider
                            without it: class URI -> ``invalid_class``; WQL -> n:CannotProcessFilter
                            nesting 0x80041010; the namespace's other classes keep answering.
    requests_of(class_name, action=None)  the logged requests about one class (case-insensitive);
    items_served(class_name)              the instances of that class sent in 200 replies.
    expire_contexts()       invalidate every open enumeration context now.
    open_contexts()         number of live contexts.
    connections_accepted, ntlm_handshakes, credssp_handshakes, certificate_logons (one per
    connection), auth_failures (HTTP 401 refusals), tls_failures (TLS handshakes that failed, such
    as a client certificate refused)   counters.

Failure injection (thread-safe; set at any time, takes effect on the next request):
    hang = {"enumerate", "pull", "release", "any"}  matching requests are read and logged, then
                            the handler waits, without answering, until the entry is removed or the
                            server stops.  The context is not advanced.
    hang_on_connect = True  new TCP connections are accepted but never read (nor TLS-handshaken)
                            until cleared or the server stops.
    drop_connection_after_requests = N   after the N-th SOAP response on a keep-alive connection
                            the server closes it without ``Connection: close`` (the FIN is corked
                            onto the response, so the client always sees the drop before reusing
                            the connection: deterministic, not a race).  Over http with NTLM
                            encryption the client's next request then goes on a new connection,
                            re-authenticates, and its body (sealed with the old NTLM context) cannot
                            be decrypted: HTTP 400 with an empty body, the pitfall in the spec; the
                            enumeration context is untouched.  With Basic (or TLS without message
                            encryption) the client simply reconnects.
    corrupt_next(action, kind, times=1)   spoil the next ``times`` successful replies to ``action``
                            (see ``CORRUPT_KINDS``: malformed XML, a truncated page, an XML bomb,
                            an oversized body, non-UTF-8 bytes); the enumeration goes on as if
                            the reply had been good.  ``clear_injections()`` drops what is queued;
                            ``oversized_bytes`` (default 20 MiB) is the size "oversized" pads to.
    fault_next(action, kind, times=1, class_name=None)   answer the next ``action`` ("enumerate",
                            "pull", "release", "any") with fault ``kind`` (see ``FAULT_KINDS``);
                            calls queue up.  A Pull answered with a fault loses its enumeration
                            (context released).  With ``class_name`` only requests about that class
                            take them (``corrupt_next`` takes ``class_name`` the same way).
    class_faults = {"SMS_PackageBaseclass": "access_denied"}   every request about a listed class
                            (Enumerate, and Pull/Release of its enumerations) is answered with that
                            fault until ``class_faults`` is set without it; other classes are
                            unaffected.  Ahead of the queued ``fault_next`` ones; not cleared by
                            clear_injections().  Keys match class names case-insensitively.
    hang_classes = {"SMS_PackageBaseclass"}   like ``hang``, for every request about a listed class.
    refuse_like = {"SMS_PackageStatus": "cannot_process_filter"}   an Enumerate of a listed class
                            whose WQL ``WHERE`` compares a property with ``LIKE`` (the exporter's
                            PackageID slices) is answered with that fault, as a provider that
                            cannot translate the query would; the same class asked without LIKE
                            (the plain WQL, the class URI) answers as usual.  The provider's two
                            shapes: ``"cannot_process_filter"`` (n:CannotProcessFilter nesting WMI
                            0x80041017) and ``"invalid_query"`` (a plain ``p:MSFT_WmiError``
                            0x80041017); any other kind of ``FAULT_KINDS`` stands for a fault that
                            only the sliced query gets.  Logged like any fault (``fault`` = the
                            kind, ``wql`` = the query); not cleared by clear_injections().  Keys
                            match class names case-insensitively.
    reset_mid_pull = N      the next N Pull responses are cut: headers and half the body, then a
                            TCP reset.  The page's context was consumed (old one invalid).
    delay = seconds         sleep before every HTTP answer (simulated round-trip time).
    stall_after_pages = N   after N PullResponses have been served (counted from when it was
                            set), further Pulls hang like ``hang``; None turns it off.

Request log record (``RequestRecord``): action ("enumerate"/"pull"/"release" or the raw Action
URI), action_uri, resource_uri, wql (filter text or None), max_elements (Enumerate: w:MaxElements;
Pull: n:MaxElements only -- a w:MaxElements in a Pull is ignored as Windows does), optimize,
max_envelope_size (as requested), operation_timeout, message_id, user, encrypted, connection
(serial number of the TCP connection), context_in, context_out, items, end_of_sequence, fault
(kind or None), status (HTTP status; None while unanswered), envelope_bytes (plain SOAP size),
bytes_out (HTTP body bytes actually sent, after encryption) and class_name: the class the request
is about -- from the class URI or the WQL ``FROM`` of an Enumerate, from its enumeration for a Pull
or Release -- spelled as the data set spells it when the class exists there, None when unknown
(an expired context, a malformed request).  Count per class with ``requests_of``/``items_served``.

Authentication (the ``_Handler`` class; each scheme is one branch of ``_authenticate``):
    basic                   ``Authorization: Basic``, checked against ``users`` on every request.
    ntlm                    ``Authorization: Negotiate`` (or ``NTLM``) with raw or SPNEGO-wrapped
                            NTLM, pyspnego's acceptor; authenticates the TCP connection.  Over
                            HTTPS the channel binding token (RFC 5929 tls-server-end-point of the
                            server certificate, the MsvAvChannelBindings AV pair of the
                            AUTHENTICATE message, [MS-NLMP]) is checked by the server itself at the
                            ``cbt`` level: pyspnego's acceptor, given bindings, refuses a client
                            that sends none and accepts one that sends zeros, which is neither
                            Windows level.  ``strict`` refuses a client that binds nothing (pywinrm
                            ``send_cbt=False``) with HTTP 401, as Windows with
                            ``CbtHardeningLevel = Strict``; ``relaxed`` accepts it; a token that
                            binds another channel is refused at both.
    credssp                 ``Authorization: CredSSP`` ([MS-CSSP]) with pyspnego's acceptor: a TLS
                            handshake inside the HTTP exchange (its own throwaway certificate),
                            NTLM inside that (users from ``NTLM_USER_FILE``, as for ntlm), the
                            public key check, then the delegated TSCredentials, which must be the
                            authenticated user's own name and password.  Each leg is a 401 with
                            ``WWW-Authenticate: CredSSP <token>``; the request that carries the
                            credentials is served.  A user the inner NTLM refuses gets the
                            TSRequest errorCode Windows sends (STATUS_LOGON_FAILURE 0xC000006D;
                            pywinrm raises NTStatusException); credentials delegated for someone
                            else get a bare 401.  Message encryption over http is
                            ``multipart/encrypted;protocol="application/HTTP-CredSSP-session-encrypted"``
                            ([MS-WSMV] 2.2.9.1.3), bodies over 16 KiB sealed in 16 KiB parts as
                            ``multipart/x-multi-encrypted``.
    certificate             TLS client certificates ([MS-WSMV] ``Authorization:`` header
                            ``MUTUAL_AUTH``, pywinrm's transport "certificate"): the TLS layer
                            verifies them against ``client_ca`` (required when certificate is the
                            only scheme offered, else optional), so a certificate of another CA,
                            an expired one or none at all fails the handshake with OpenSSL's alert
                            (``unknown ca``, ``certificate expired``, ``certificate required``;
                            with TLS 1.3 the client reads it after sending its request).  A
                            verified certificate logs on as the user of the first ``cert_mappings``
                            entry whose issuer thumbprint is its CA's and whose subject is its UPN
                            (subjectAltName otherName) or, lacking one, its subject CN, like
                            ``New-Item WSMan:\localhost\ClientCertificate -Subject ... -Issuer
                            <thumbprint> -Credential ...``; an unmapped one gets HTTP 401.
    Offers                  a 401 without a token lists every scheme offered, one WWW-Authenticate
                            header each, in Windows' order (Negotiate, the mutual URI, Basic,
                            CredSSP).
    Certificates            ``make_self_signed_cert`` (the default server certificate),
                            ``make_ca``, ``issue_client_cert(dir, ca, cn, upn=..., not_before=...,
                            not_after=...)`` and ``cert_thumbprint`` mint what a test needs; key
                            files are written mode 0600.

Replay of a capture (``exporter.capture``, tests/captures/):
    replay(directory)       from now on every SOAP request is answered from the capture made with
                            ``--record`` in ``directory`` instead of the data set (injections are
                            ignored; authentication and message encryption work as configured).
                            A request takes the recorded reply of the matching recorded request,
                            with that exchange's HTTP status (faults 500, an empty 400 too), its
                            ``a:RelatesTo`` rewritten to the request's MessageID: an Enumerate by
                            its resource URI (case-insensitive) and WQL, the n-th such Enumerate
                            taking the n-th recorded one (a restarted enumeration); a Pull by the
                            enumeration context it carries (the recorded replies carry the recorded
                            contexts, so the client sends them back), again in recorded order; any
                            other action by its Action and resource URI.  A Release is answered with
                            an empty ReleaseResponse; an Identify the capture holds none of is
                            answered as without a capture.  Recorded exchanges that got no HTTP answer
                            (a reset, a timeout) are not replayed.  A request with no recorded match
                            gets a fault saying so and is listed in ``replay_unmatched`` (what a
                            test asserts empty first).  A directory without a valid index raises
                            ``exporter.capture.CaptureError`` naming what is wrong.

NTLM credentials: pyspnego's acceptor reads ``NTLM_USER_FILE`` (lines ``DOMAIN:USER:PASSWORD``)
from the process environment.  The environment is process-wide and tests run in-process, so all
running servers share one temp file holding the union of their users (a user name with two
different passwords on two live servers is refused with ValueError); each server then accepts only
its own users.  The variable is set on the first start() and restored on the last stop(); code
that replaces ``NTLM_USER_FILE`` meanwhile breaks NTLM for these servers.  Passwords may not
contain ``:`` or newlines when NTLM or CredSSP is offered (the file format cannot hold them).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import logging
import os
import re
import shutil
import socket
import socketserver
import ssl
import struct
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from exporter.capture import Capture, ExchangeRecord

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- constants

NS_S = "http://www.w3.org/2003/05/soap-envelope"
NS_A = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_N = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
NS_W = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_F = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS_CIM = "http://schemas.dmtf.org/wbem/wscim/1/common"
NS_WMIERROR = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError"
NS_WSMID = "http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd"
SECURITY_PROFILES = {
    "basic": "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/http/basic",
    "ntlm": "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/http/spnego-kerberos",
    "kerberos": "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/http/spnego-kerberos",
}
NS_CIMBINDING = "http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd"
WMI_URI_PREFIX = "http://schemas.microsoft.com/wbem/wsman/1/wmi/"
WQL_DIALECT = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
ACTION_ENUMERATE = f"{NS_N}/Enumerate"
ACTION_PULL = f"{NS_N}/Pull"
ACTION_RELEASE = f"{NS_N}/Release"
_SHORT_ACTIONS = {ACTION_ENUMERATE: "enumerate", ACTION_PULL: "pull", ACTION_RELEASE: "release"}
SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
CREDSSP_ENCRYPTED_PROTOCOL = "application/HTTP-CredSSP-session-encrypted"
# A CredSSP-sealed message is cut into parts of at most this many bytes ([MS-WSMV] 2.2.9.1.3).
CREDSSP_CHUNK = 16384
# NTSTATUS a Windows CredSSP acceptor puts in the TSRequest errorCode when the logon fails.
STATUS_LOGON_FAILURE = 0xC000006D
# The schemes a server can offer (``auth=``), in the order Windows lists them in WWW-Authenticate.
AUTH_SCHEMES = ("ntlm", "kerberos", "certificate", "basic", "credssp")
_OFFERS = {
    "ntlm": "Negotiate",
    "kerberos": "Kerberos",  # with Negotiate, which carries Kerberos too
    "certificate": "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual",
    "basic": 'Basic realm="WSMAN"',
    "credssp": "CredSSP",
}
# Which sealing protocol goes with the context of which scheme.
_SEALING = {"ntlm": ENCRYPTED_PROTOCOL, "kerberos": ENCRYPTED_PROTOCOL, "credssp": CREDSSP_ENCRYPTED_PROTOCOL}
MIME_BOUNDARY = b"--Encrypted Boundary"

DEFAULT_USERS: dict[str, str] = {"CORP\\svc-cm-exporter": "Corr3ct-Horse-Battery"}
DEFAULT_MACHINE = "CM01.corp.example.com"
DEFAULT_PAGE_BYTES = 75 * 1024
DEFAULT_MAX_ENVELOPE_SIZE = 512_000

# WinRM / WMI codes (winerror.h names in comments).
CODE_CANNOT_PROCESS_FILTER = 2150858778  # ERROR_WSMAN_ENUMERATE_CANNOT_PROCESS_FILTER 0x8033801A
CODE_INVALID_CONTEXT = 2150858779  # ERROR_WSMAN_ENUMERATE_INVALID_ENUMERATION_CONTEXT 0x8033801B
CODE_TIMED_OUT = 2150858793  # ERROR_WSMAN_OPERATION_TIMEDOUT 0x80338029
CODE_RESOURCE_NOT_FOUND = 2150858752  # ERROR_WSMAN_RESOURCE_NOT_FOUND 0x80338000
CODE_ACTION_NOT_SUPPORTED = 2150858771  # ERROR_WSMAN_ACTION_NOT_SUPPORTED 0x80338013
CODE_SCHEMA_VALIDATION = 2150858817  # ERROR_WSMAN_SCHEMA_VALIDATION_ERROR 0x80338041
CODE_QUOTA_MAX_OPERATIONS = 2150859174  # ERROR_WSMAN_QUOTA_MAX_OPERATIONS 0x803381A6
# The spec's code for w:EncodingLimit.  winerror.h names 0x80338111 ERROR_WSMAN_HTTP_REQUEST_TOO_LARGE_STATUS
# and has ERROR_WSMAN_MAX_ENVELOPE_SIZE_EXCEEDED = 0x80338048 for a response over MaxEnvelopeSize; no
# public capture says which Windows sends, so the spec wins and clients should key on the subcode.
CODE_ENCODING_LIMIT = 0x80338111
CODE_ACCESS_DENIED = 5  # ERROR_ACCESS_DENIED
CODE_INTERNAL_ERROR = 1359  # ERROR_INTERNAL_ERROR
WBEM_E_FAILED = 0x80041001
WBEM_E_ACCESS_DENIED = 0x80041003
WBEM_E_INVALID_NAMESPACE = 0x8004100E
WBEM_E_INVALID_CLASS = 0x80041010
WBEM_E_INVALID_QUERY = 0x80041017

FAULT_KINDS = frozenset(
    {
        "invalid_namespace",  # WMI 0x8004100E as MSFT_WmiError (w:InternalError)
        "invalid_namespace_uri",  # the other shape: a:DestinationUnreachable + InvalidResourceURI
        "invalid_class",  # WMI 0x80041010 as MSFT_WmiError (w:InternalError)
        "cannot_process_filter",  # n:CannotProcessFilter, WSManFault 2150858778, nested WMI error
        "invalid_query",  # WMI 0x80041017 as MSFT_WmiError (w:InternalError)
        "access_denied",  # w:AccessDenied with MSFT_WmiError 0x80041003
        "access_denied_wsman",  # w:AccessDenied with WSManFault Code 5
        "provider_failure",  # w:InternalError, WSManFault 1359, nested 0x80041001
        "timed_out",  # w:TimedOut, WSManFault 2150858793
        "invalid_context",  # n:InvalidEnumerationContext, WSManFault 2150858779
        "quota",  # w:QuotaLimit with MSFT_WmiError 0x803381A6
        "encoding_limit",  # w:EncodingLimit, WSManFault CODE_ENCODING_LIMIT
        "schema_validation",  # w:SchemaValidationError (malformed request)
        "action_not_supported",  # a:ActionNotSupported
    }
)
INJECTABLE_ACTIONS = frozenset({"enumerate", "pull", "release", "any"})
# What `corrupt_next` does to a successful reply's envelope (before any message encryption).
CORRUPT_KINDS = frozenset(
    {
        "malformed",  # a closing tag that does not match: not well-formed XML
        "truncated",  # the first half of the envelope, with a Content-Length that matches it
        "bomb",  # a "billion laughs" DOCTYPE declaring nested entities, used in the body
        "oversized",  # the envelope padded with whitespace to ``oversized_bytes`` (default 20 MiB)
        "non_utf8",  # bytes 0xFF 0xFE inside the body: neither UTF-8 nor a valid UTF-16 document
    }
)
_BOMB_DOCTYPE = (
    '<?xml version="1.0"?>\n<!DOCTYPE s:Envelope [\n  <!ENTITY lol "lol">\n'
    + "".join(f'  <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
    + "]>\n"
)


# --------------------------------------------------------------------------- certificates

# [MS-WSMV]'s header of TLS client certificate authentication (pywinrm's transport "certificate").
MUTUAL_AUTH = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
# The user principal name in a certificate's subjectAltName (szOID_NT_PRINCIPAL_NAME), what
# Windows maps a client certificate by.
UPN_OID = "1.3.6.1.4.1.311.20.2.3"


def _write_pem(directory: str, stem: str, cert: Any, key: Any) -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization

    cert_path = os.path.join(directory, f"{stem}-cert.pem")
    key_path = os.path.join(directory, f"{stem}-key.pem")
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def _key_usage(*, ca: bool) -> Any:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=not ca, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False,
    )


def make_self_signed_cert(
    directory: str, *, not_before: datetime | None = None, not_after: datetime | None = None
) -> tuple[str, str]:
    """Mint a throwaway self-signed certificate for 127.0.0.1/localhost; return (cert, key) paths.
    Valid from five minutes ago for two days unless `not_before`/`not_after` say otherwise.

    The certificate is its own CA (basicConstraints CA:TRUE, keyCertSign), so the cert file can be
    handed to a client as ``ca_trust_path``/``verify``.  EC P-256 keeps minting fast.
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=True, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(minutes=5))
        .not_valid_after(not_after or now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write_pem(directory, "wsman-test", cert, key)


def make_ca(directory: str, name: str = "WSMan Test Root CA", *, stem: str = "ca") -> tuple[str, str]:
    """Mint a throwaway root CA (EC P-256, valid two days); return (cert, key) paths.

    Hand its cert file to the server as ``client_ca`` and sign client certificates with
    ``issue_client_cert``; Windows' mapping names it by its thumbprint (``cert_thumbprint``).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corp Test"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write_pem(directory, stem, cert, key)


def issue_client_cert(
    directory: str,
    ca: tuple[str, str],
    common_name: str,
    *,
    upn: str | None = None,
    stem: str | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[str, str]:
    """A client authentication certificate signed by ``ca`` (its (cert, key) paths); return (cert, key).

    ``upn`` goes into the subjectAltName as a user principal name (otherName
    ``szOID_NT_PRINCIPAL_NAME``), as on the certificates Windows maps to accounts.  The validity
    defaults to an hour ago .. two days on; pass dates in the past for an expired certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    with open(ca[0], "rb") as fh:
        ca_cert = x509.load_pem_x509_certificate(fh.read())
    with open(ca[1], "rb") as fh:
        ca_key = serialization.load_pem_private_key(fh.read(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(hours=1))
        .not_valid_after(not_after or now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
    )
    if upn is not None:
        # OtherName's value is the DER of a UTF8String: tag 0x0C, length, text.
        text = upn.encode("utf-8")
        assert len(text) < 128
        value = bytes([0x0C, len(text)]) + text
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.OtherName(x509.ObjectIdentifier(UPN_OID), value)]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return _write_pem(directory, stem or common_name.replace(" ", "-").lower(), cert, key)


def cert_thumbprint(cert_path: str) -> str:
    """The SHA-1 thumbprint of a PEM certificate in upper-case hex, as Windows shows it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    with open(cert_path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # Windows names certificates by SHA-1


@dataclass(frozen=True)
class CertMapping:
    r"""One ``WSMan:\localhost\ClientCertificate`` entry, as Windows keeps it.

    A client certificate whose UPN (subjectAltName) or, lacking one, subject common name is
    ``subject`` (case-insensitive; ``*`` for any), issued by the CA whose thumbprint is ``issuer``
    (``cert_thumbprint``), logs on as ``user``: a key of the server's ``users``, as the mapping's
    ``-Credential`` names a local account.
    """

    subject: str
    issuer: str
    user: str


def certificate_names(der: bytes) -> list[str]:
    """What a certificate is mapped by: its UPNs, then its subject common name."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    names: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id.dotted_string == UPN_OID and other.value[:1] == b"\x0c":
                names.append(other.value[2:].decode("utf-8", "replace"))
    names += [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return names


def _channel_bindings(cert_path: str) -> Any:
    """The tls-server-end-point channel bindings (RFC 5929) a client computes for this cert."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from spnego.channel_bindings import GssChannelBindings

    with open(cert_path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return GssChannelBindings(application_data=b"tls-server-end-point:" + digest.finalize())


CBT_LEVELS = ("strict", "relaxed", "none")
_NTLM_AUTHENTICATE = b"NTLMSSP\x00\x03\x00\x00\x00"
_MSV_AV_EOL, _MSV_AV_CHANNEL_BINDINGS = 0x0000, 0x000A


def ntlm_channel_bindings(token: bytes) -> bytes | None:
    """The MsvAvChannelBindings value ([MS-NLMP] 2.2.2.1) of an NTLM AUTHENTICATE message, raw or
    inside SPNEGO; None when it has none (an NTLMv1 response, or a client that sent no bindings).

    The AV pairs are in the NTLMv2 response, after NTProofStr (16 bytes) and the fixed part of
    NTLMv2_CLIENT_CHALLENGE (28 bytes); NTProofStr is a MAC over them, so once the response
    verified they are the client's own.
    """
    start = token.find(_NTLM_AUTHENTICATE)
    if start < 0 or len(token) < start + 28:
        return None
    message = token[start:]
    length, _, offset = struct.unpack_from("<HHI", message, 20)  # NtChallengeResponseFields
    response = message[offset : offset + length]
    position = 16 + 28
    while position + 4 <= len(response):
        av_id, av_len = struct.unpack_from("<HH", response, position)
        position += 4
        if av_id == _MSV_AV_EOL:
            break
        if av_id == _MSV_AV_CHANNEL_BINDINGS:
            return response[position : position + av_len]
        position += av_len
    return None


class _WindowsLogonStatus:
    """The NTLM acceptor inside a CredSSP one, refusing a logon with Windows' NTSTATUS.

    pyspnego's CredSSP acceptor puts the error's ``nt_status`` in the TSRequest errorCode it sends
    back (version 3, 4, 6): SEC_E_LOGON_DENIED from its NTLM acceptor, where Windows sends
    STATUS_LOGON_FAILURE (0xC000006D, as a 4-byte INTEGER hence negative), what pywinrm users see.
    Everything else is the wrapped context's.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def step(self, in_token: bytes | None = None, **kwargs: Any) -> bytes | None:
        from spnego.exceptions import SpnegoError

        try:
            return cast("bytes | None", self._inner.step(in_token, **kwargs))
        except SpnegoError as exc:
            exc._SSPI_CODE = STATUS_LOGON_FAILURE - (1 << 32)  # type: ignore[attr-defined] # read by nt_status
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# --------------------------------------------------------------------------- NTLM user file


class _NtlmUserFile:
    """The process-wide ``NTLM_USER_FILE`` shared by every running server (see module docstring)."""

    _lock = threading.Lock()
    _owners: dict[int, dict[str, str]] = {}  # noqa: RUF012 - deliberately class-level, process-wide
    _dir: str | None = None
    _previous: str | None = None

    @classmethod
    def register(cls, owner: int, users: Mapping[str, str]) -> None:
        """Add a server's users to the shared file, creating it and setting the env var if needed."""
        with cls._lock:
            merged = cls._merged({**cls._owners, owner: dict(users)})
            if cls._dir is None:
                cls._dir = tempfile.mkdtemp(prefix="wsman-ntlm-")
                cls._previous = os.environ.get("NTLM_USER_FILE")
            cls._owners[owner] = dict(users)
            cls._write(merged)

    @classmethod
    def unregister(cls, owner: int) -> None:
        """Drop a server's users; the last one out removes the file and restores the env var."""
        with cls._lock:
            if cls._owners.pop(owner, None) is None:
                return
            if cls._owners:
                cls._write(cls._merged(cls._owners))
                return
            if cls._previous is None:
                os.environ.pop("NTLM_USER_FILE", None)
            else:
                os.environ["NTLM_USER_FILE"] = cls._previous
            if cls._dir is not None:
                shutil.rmtree(cls._dir, ignore_errors=True)
            cls._dir = None

    @staticmethod
    def _merged(owners: Mapping[int, Mapping[str, str]]) -> dict[tuple[str, str], str]:
        merged: dict[tuple[str, str], str] = {}
        for users in owners.values():
            for name, password in users.items():
                domain, _, user = name.rpartition("\\")
                for part in (domain, user, password):
                    if ":" in part or "\n" in part or "\r" in part:
                        raise ValueError(f"NTLM user {name!r}: ':' and newlines cannot be stored")
                key = (domain.upper(), user.upper())
                if merged.setdefault(key, password) != password:
                    raise ValueError(f"NTLM user {name!r} has different passwords on two live servers")
                merged[key] = password
        return merged

    @classmethod
    def _write(cls, merged: Mapping[tuple[str, str], str]) -> None:
        assert cls._dir is not None
        path = os.path.join(cls._dir, "ntlm_users")
        lines = [f"{domain}:{user}:{password}\n" for (domain, user), password in merged.items()]
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
        os.replace(tmp, path)
        os.environ["NTLM_USER_FILE"] = path


# --------------------------------------------------------------------------- value rendering


class CimDatetime(str):
    """A datetime already in wire form (e.g. 7 fraction digits or ``+02:00``), rendered verbatim."""

    __slots__ = ()


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


@functools.lru_cache(maxsize=65536)  # pure; the values of a large data set repeat (hosts, sites)
def xml_text(value: str) -> str:
    """Escape text as Windows does: control characters other than tab/LF/CR become ``?``."""
    value = _CONTROL_CHARS.sub("?", value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def xml_attr(value: str) -> str:
    """Escape an attribute value (double-quoted)."""
    return xml_text(value).replace('"', "&quot;")


def format_datetime(value: datetime) -> str:
    """xs:dateTime as Windows writes it: fraction digits without trailing zeros, ``Z`` for UTC."""
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset()
    if offset is None:
        return text
    if offset == timedelta(0):
        return text + "Z"
    sign = "+" if offset > timedelta(0) else "-"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return xml_text(str(value))


def render_property(prefix: str, name: str, value: Any) -> str:
    """One property element; ``prefix`` is ``"p:"`` for the class shape, ``""`` in a fragment."""
    tag = f"{prefix}{name}"
    if isinstance(value, list | tuple):
        if not value:
            return f'<{tag} xsi:nil="true"/>'
        return "".join(render_property(prefix, name, item) for item in value)
    if value is None:
        return f'<{tag} xsi:nil="true"/>'
    if isinstance(value, CimDatetime | datetime):
        inner = "cim:Datetime" if prefix else "Datetime"
        text = xml_text(str(value)) if isinstance(value, CimDatetime) else format_datetime(value)
        return f"<{tag}><{inner}>{text}</{inner}></{tag}>"
    return f"<{tag}>{_scalar_text(value)}</{tag}>"


def _sorted_names(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda n: (n.lower(), n))


def render_instance(class_name: str, class_uri: str, row: Mapping[str, Any]) -> str:
    """``SELECT *`` / class-URI shape: ``<p:Class xmlns:p=URI xsi:type="p:Class_Type">``."""
    props = "".join(render_property("p:", name, row[name]) for name in _sorted_names(row))
    return (
        f'<p:{class_name} xmlns:p="{xml_attr(class_uri)}" xmlns:cim="{NS_CIM}" '
        f'xsi:type="p:{class_name}_Type" xml:lang="en-US">{props}</p:{class_name}>'
    )


def render_fragment(properties: Sequence[str], row: Mapping[str, Any]) -> str:
    """Explicit property list shape: ``<w:XmlFragment>`` with unqualified children."""
    props = "".join(render_property("", name, row.get(name)) for name in properties)
    return f"<w:XmlFragment>{props}</w:XmlFragment>"


# --------------------------------------------------------------------------- WQL subset

Predicate = Callable[[Mapping[str, Any]], bool]
_Selection = tuple[str, list[Mapping[str, Any]], "tuple[str, ...] | None"]


class WqlError(ValueError):
    """The query is outside the supported WQL subset; answered as n:CannotProcessFilter."""


@dataclass(frozen=True)
class WqlQuery:
    """A parsed ``SELECT props|* FROM Class [WHERE ...]``; names are as written, matched later."""

    text: str
    properties: tuple[str, ...] | None
    class_name: str
    where: Predicate | None
    referenced: frozenset[str]
    likes: frozenset[str] = frozenset()  # the properties compared with LIKE (lower case)


_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<op><>|!=|<=|>=|=|<|>)
      | (?P<punct>[(),*])
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "LIKE", "IS", "NULL", "TRUE", "FALSE"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise WqlError(f"unexpected character at {pos}: {text[pos:pos + 10]!r}")
        kind = cast(str, match.lastgroup)
        value = match.group(kind)
        if kind == "ident" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        tokens.append((kind, value))
        pos = match.end()
    return tokens


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def like_regex(pattern: str) -> re.Pattern[str]:
    """WQL LIKE: ``%`` any run, ``_`` one char, ``[abc]``/``[a-z]``/``[^x]`` sets; case-insensitive."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        elif ch == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            neg = body.startswith("^")
            body = body[1:] if neg else body
            out.append("[" + ("^" if neg else "") + re.escape(body).replace("\\-", "-") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _normalise(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return format_datetime(value)
    return value


def _compare(actual: Any, op: str, literal: Any) -> bool:
    """WQL comparison: NULL never matches, strings compare case-insensitively, numbers numerically."""
    if actual is None or literal is None:
        return False
    a, b = _normalise(actual), _normalise(literal)
    if isinstance(a, int | float) != isinstance(b, int | float):
        try:
            a, b = float(a), float(b)
        except (TypeError, ValueError):
            a, b = str(a), str(b)
    if isinstance(a, str) and isinstance(b, str):
        a, b = a.casefold(), b.casefold()
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda x, y: bool(x == y),
        "<>": lambda x, y: bool(x != y),
        "!=": lambda x, y: bool(x != y),
        "<": lambda x, y: bool(x < y),
        ">": lambda x, y: bool(x > y),
        "<=": lambda x, y: bool(x <= y),
        ">=": lambda x, y: bool(x >= y),
    }
    return ops[op](a, b)


def _get(row: Mapping[str, Any], name: str, written: str | None = None) -> Any:
    """The value of property ``name`` (lower case) in ``row``, names matching case-insensitively.

    ``written``, the name as the query spells it, is tried first: rows use one spelling per
    property, and a million-row enumeration should not scan every row's keys for every predicate.
    """
    if written is not None and written in row:
        return row[written]
    for key, value in row.items():
        if key.lower() == name:
            return value
    return None


class _WqlParser:
    """Recursive descent over the tokens: OR of ANDs of NOTs of comparisons / parentheses."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.referenced: set[str] = set()
        self.likes: set[str] = set()

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            raise WqlError(f"expected {value or kind} at token {self.pos} in {self.text!r}")
        self.pos += 1
        return token[1]

    def accept(self, kind: str, value: str | None = None) -> bool:
        token = self.peek()
        if token is not None and token[0] == kind and (value is None or token[1] == value):
            self.pos += 1
            return True
        return False

    def parse(self) -> WqlQuery:
        self.take("kw", "SELECT")
        properties: tuple[str, ...] | None
        if self.accept("punct", "*"):
            properties = None
        else:
            names = [self.take("ident")]
            while self.accept("punct", ","):
                names.append(self.take("ident"))
            properties = tuple(names)
            self.referenced.update(n.lower() for n in names)
        self.take("kw", "FROM")
        class_name = self.take("ident")
        where = self.expression() if self.accept("kw", "WHERE") else None
        if self.peek() is not None:
            raise WqlError(f"unexpected {self.peek()} in {self.text!r}")
        return WqlQuery(self.text, properties, class_name, where, frozenset(self.referenced), frozenset(self.likes))

    def expression(self) -> Predicate:
        terms = [self.conjunction()]
        while self.accept("kw", "OR"):
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else (lambda row: any(t(row) for t in terms))

    def conjunction(self) -> Predicate:
        factors = [self.negation()]
        while self.accept("kw", "AND"):
            factors.append(self.negation())
        return factors[0] if len(factors) == 1 else (lambda row: all(f(row) for f in factors))

    def negation(self) -> Predicate:
        if self.accept("kw", "NOT"):
            inner = self.negation()
            return lambda row: not inner(row)
        if self.accept("punct", "("):
            inner = self.expression()
            self.take("punct", ")")
            return inner
        return self.comparison()

    def literal(self) -> Any:
        token = self.peek()
        if token is None:
            raise WqlError("missing literal")
        self.pos += 1
        kind, value = token
        if kind == "str":
            return _unquote(value)
        if kind == "num":
            return float(value) if "." in value else int(value)
        if kind == "kw" and value in ("TRUE", "FALSE"):
            return value == "TRUE"
        raise WqlError(f"expected a literal, got {value!r}")

    def comparison(self) -> Predicate:
        written = self.take("ident")
        name = written.lower()
        self.referenced.add(name)
        if self.accept("kw", "IS"):
            negate = self.accept("kw", "NOT")
            self.take("kw", "NULL")
            return lambda row: (_get(row, name, written) is None) != negate
        negate = self.accept("kw", "NOT")
        if self.accept("kw", "LIKE"):
            self.likes.add(name)
            pattern = like_regex(str(self.literal()))
            known: dict[str, bool] = {}  # per value: a million rows hold a few thousand PackageIDs

            def like(row: Mapping[str, Any]) -> bool:
                value = _get(row, name, written)
                if value is None:
                    return negate
                text = str(_normalise(value))
                found = known.get(text)
                if found is None:
                    found = pattern.fullmatch(text) is not None
                    if len(known) < 100_000:
                        known[text] = found
                return found != negate

            return like
        if negate:
            raise WqlError("NOT must be followed by LIKE here")
        op = self.take("op")
        value = self.literal()
        return lambda row: _compare(_get(row, name, written), op, value)


_WQL_FROM = re.compile(r"\bFROM\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


def _class_key(name: str | None) -> str | None:
    """How class names are compared (case-insensitively, as WMI does)."""
    return None if name is None else name.lower()


def parse_wql(text: str) -> WqlQuery:
    """Parse the supported WQL subset or raise WqlError."""
    return _WqlParser(text.strip()).parse()


# --------------------------------------------------------------------------- faults


@dataclass(eq=False)
class Fault(Exception):
    """A SOAP fault to answer with (HTTP 500)."""

    kind: str
    code: str
    subcode: str
    reason: str
    detail: str
    action: str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"

    def __str__(self) -> str:
        return f"{self.subcode}: {self.reason}"


def _hresult(code: int) -> str:
    return f"HRESULT 0x{code:08x}"


def wmi_error_xml(code: int, message: str, windows_message: str, cim_status: int) -> str:
    """``p:MSFT_WmiError`` as the WMI plugin puts it in s:Detail (pywinrm reads error_Code)."""

    def nil(name: str) -> str:
        return f'<p:{name} xsi:type="cim:cimString" xsi:nil="true"/>'

    def typed(name: str, kind: str, value: str | int) -> str:
        return f'<p:{name} xsi:type="cim:{kind}">{xml_text(str(value))}</p:{name}>'

    return (
        f'<p:MSFT_WmiError b:IsCIM_Error="true" xmlns:b="{NS_CIMBINDING}" xmlns:p="{NS_WMIERROR}" '
        f'xmlns:cim="{NS_CIM}" xmlns:xsi="{NS_XSI}" xsi:type="p:MSFT_WmiError_Type">'
        + typed("CIMStatusCode", "cimUnsignedInt", cim_status)
        + nil("CIMStatusCodeDescription")
        + nil("ErrorSource")
        + typed("ErrorSourceFormat", "cimUnsignedShort", 0)
        + typed("ErrorType", "cimUnsignedShort", 0)
        + typed("Message", "cimString", message)
        + typed("MessageID", "cimString", _hresult(code))
        + nil("OtherErrorSourceFormat")
        + nil("OtherErrorType")
        + nil("OwningEntity")
        + typed("PerceivedSeverity", "cimUnsignedShort", 0)
        + typed("ProbableCause", "cimUnsignedShort", 0)
        + nil("ProbableCauseDescription")
        + typed("error_Category", "cimUnsignedInt", 30)
        + typed("error_Code", "cimUnsignedInt", code)
        + typed("error_Type", "cimString", "HRESULT")
        + typed("error_WindowsErrorMessage", "cimString", windows_message)
        + "</p:MSFT_WmiError>"
    )


def wsman_fault_xml(code: int, message_xml: str, machine: str) -> str:
    """``f:WSManFault Code=...`` (pywinrm reads Code when it is a direct child of s:Detail)."""
    return (
        f'<f:WSManFault xmlns:f="{NS_F}" Code="{code}" Machine="{xml_attr(machine)}">'
        f"<f:Message>{message_xml}</f:Message></f:WSManFault>"
    )


def provider_fault_xml(code: int, inner_code: int, message: str, machine: str, wmi_error: str) -> str:
    """An outer WSManFault whose message nests the WMI provider's own fault and MSFT_WmiError."""
    inner = (
        '<f:ProviderFault provider="WMI Provider" path="%systemroot%\\system32\\WsmWmiPl.dll">'
        + wsman_fault_xml(inner_code, xml_text(message), machine)
        + f"<f:ExtendedError>{wmi_error}</f:ExtendedError></f:ProviderFault>"
    )
    return wsman_fault_xml(code, inner, machine)


_WMI_MESSAGES: dict[int, tuple[str, int]] = {
    WBEM_E_FAILED: ("Generic failure ", 1),
    WBEM_E_ACCESS_DENIED: ("Access denied ", 2),
    WBEM_E_INVALID_NAMESPACE: ("Invalid namespace ", 3),
    WBEM_E_INVALID_CLASS: ("Invalid class ", 5),
    WBEM_E_INVALID_QUERY: ("Invalid query ", 1),
}


def _wmi_reason(code: int) -> str:
    text = _WMI_MESSAGES.get(code, ("", 1))[0].strip()
    return (
        "The WS-Management service cannot process the request. The WMI service or the WMI provider "
        f"returned an error: {text} ({_hresult(code)}). "
    )


def _wmi_fault(kind: str, code: int, subcode: str = "w:InternalError", fault_code: str = "s:Receiver") -> Fault:
    windows_message, cim_status = _WMI_MESSAGES[code]
    reason = _wmi_reason(code)
    return Fault(kind, fault_code, subcode, reason, wmi_error_xml(code, reason, windows_message, cim_status))


def make_fault(kind: str, machine: str = DEFAULT_MACHINE, detail: str = "", wmi_code: int | None = None) -> Fault:
    """Build the fault of ``kind`` (see FAULT_KINDS) in the shape Windows uses for it."""
    builders: dict[str, Callable[[], Fault]] = {
        "invalid_namespace": lambda: _wmi_fault(kind, WBEM_E_INVALID_NAMESPACE),
        "invalid_class": lambda: _wmi_fault(kind, WBEM_E_INVALID_CLASS),
        "invalid_query": lambda: _wmi_fault(kind, WBEM_E_INVALID_QUERY),
        "access_denied": lambda: _wmi_fault(kind, WBEM_E_ACCESS_DENIED, "w:AccessDenied", "s:Sender"),
        "invalid_namespace_uri": lambda: _invalid_resource_fault(machine, detail),
        "cannot_process_filter": lambda: _filter_fault(machine, detail, wmi_code or WBEM_E_INVALID_QUERY),
        "access_denied_wsman": lambda: _simple_fault(
            kind, "s:Sender", "w:AccessDenied", CODE_ACCESS_DENIED, "Access is denied. ", machine
        ),
        "provider_failure": lambda: _provider_failure(machine),
        "timed_out": lambda: _simple_fault(
            kind,
            "s:Receiver",
            "w:TimedOut",
            CODE_TIMED_OUT,
            "The WS-Management service cannot complete the operation within the time specified in "
            "OperationTimeout.  ",
            machine,
        ),
        "invalid_context": lambda: _simple_fault(
            kind,
            "s:Sender",
            "n:InvalidEnumerationContext",
            CODE_INVALID_CONTEXT,
            "The WS-Management service cannot process the request because the enumeration context "
            "supplied in the message is not valid. " + detail,
            machine,
            action=f"{NS_N}/fault",
        ),
        "quota": _quota_fault,
        "encoding_limit": lambda: _encoding_limit_fault(machine),
        "schema_validation": lambda: _simple_fault(
            kind,
            "s:Sender",
            "w:SchemaValidationError",
            CODE_SCHEMA_VALIDATION,
            "The SOAP XML in the message does not match the corresponding XML schema definition. " + detail,
            machine,
        ),
        "action_not_supported": lambda: _simple_fault(
            kind,
            "s:Sender",
            "a:ActionNotSupported",
            CODE_ACTION_NOT_SUPPORTED,
            "The action is not supported by the service. " + detail,
            machine,
            action=f"{NS_A}/fault",
        ),
    }
    if kind not in builders:
        raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(FAULT_KINDS)}")
    return builders[kind]()


def _simple_fault(
    kind: str, code: str, subcode: str, wsman_code: int, message: str, machine: str, action: str | None = None
) -> Fault:
    detail = wsman_fault_xml(wsman_code, xml_text(message), machine)
    if action is None:
        return Fault(kind, code, subcode, message, detail)
    return Fault(kind, code, subcode, message, detail, action)


def _invalid_resource_fault(machine: str, detail: str) -> Fault:
    message = (
        "The WS-Management service cannot process the request. The service cannot find the resource "
        "identified by the resource URI and selectors. " + detail
    )
    body = (
        "<w:FaultDetail>http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidResourceURI</w:FaultDetail>"
        + wsman_fault_xml(CODE_RESOURCE_NOT_FOUND, xml_text(message), machine)
    )
    return Fault("invalid_namespace_uri", "s:Sender", "a:DestinationUnreachable", message, body, f"{NS_A}/fault")


def _filter_fault(machine: str, detail: str, wmi_code: int) -> Fault:
    message = (
        "The data source could not process the filter. The filter might be missing or it might be "
        "invalid. Change the filter and try the request again. " + detail
    )
    windows_message, cim_status = _WMI_MESSAGES.get(wmi_code, ("Invalid query ", 1))
    wmi = wmi_error_xml(wmi_code, _wmi_reason(wmi_code), windows_message, cim_status)
    body = provider_fault_xml(CODE_CANNOT_PROCESS_FILTER, CODE_CANNOT_PROCESS_FILTER, message, machine, wmi)
    return Fault("cannot_process_filter", "s:Sender", "n:CannotProcessFilter", message, body, f"{NS_N}/fault")


def _provider_failure(machine: str) -> Fault:
    reason = _wmi_reason(WBEM_E_FAILED)
    wmi = wmi_error_xml(WBEM_E_FAILED, reason, "Generic failure ", 1)
    body = provider_fault_xml(CODE_INTERNAL_ERROR, WBEM_E_FAILED, reason, machine, wmi)
    return Fault("provider_failure", "s:Receiver", "w:InternalError", reason, body)


def _quota_fault() -> Fault:
    message = (
        "The WS-Management service cannot process the request. This user is allowed a maximum number of "
        "concurrent operations, which has been exceeded. Close existing operations for this user, or "
        "raise the quota for this user. "
    )
    wmi = wmi_error_xml(CODE_QUOTA_MAX_OPERATIONS, message, message, 27)
    return Fault("quota", "s:Receiver", "w:QuotaLimit", message, wmi)


def _encoding_limit_fault(machine: str) -> Fault:
    message = "The response that the WS-Management service computed exceeds the maximum envelope size in the request. "
    body = (
        "<w:FaultDetail>http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/MaxEnvelopeSize</w:FaultDetail>"
        + wsman_fault_xml(CODE_ENCODING_LIMIT, xml_text(message), machine)
    )
    return Fault("encoding_limit", "s:Sender", "w:EncodingLimit", message, body)


# --------------------------------------------------------------------------- envelopes


def _new_uuid() -> str:
    return "uuid:" + str(uuid.uuid4()).upper()


def envelope(action: str, relates_to: str | None, body: str) -> str:
    """A response envelope with the header Windows sends (To, Action, MessageID, RelatesTo)."""
    relates = f"<a:RelatesTo>{xml_text(relates_to)}</a:RelatesTo>" if relates_to else ""
    return (
        f'<s:Envelope xml:lang="en-US" xmlns:s="{NS_S}" xmlns:a="{NS_A}" xmlns:n="{NS_N}" '
        f'xmlns:w="{NS_W}" xmlns:xsi="{NS_XSI}"><s:Header><a:To>{ANONYMOUS}</a:To>'
        f"<a:Action>{action}</a:Action><a:MessageID>{_new_uuid()}</a:MessageID>{relates}"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )


def fault_envelope(fault: Fault, relates_to: str | None) -> str:
    """The s:Fault envelope for ``fault``."""
    body = (
        f"<s:Fault><s:Code><s:Value>{fault.code}</s:Value><s:Subcode><s:Value>{fault.subcode}</s:Value>"
        f'</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{xml_text(fault.reason)}</s:Text>'
        f"</s:Reason><s:Detail>{fault.detail}</s:Detail></s:Fault>"
    )
    return envelope(fault.action, relates_to, body)


def enumerate_body(context: str | None, items: Sequence[str] | None, end: bool) -> str:
    """EnumerateResponse: context (empty when done), optional w:Items, w:EndOfSequence."""
    parts = [f"<n:EnumerationContext>{context or ''}</n:EnumerationContext>"]
    if items is not None:
        parts.append("<w:Items>" + "".join(items) + "</w:Items>")
    if end:
        parts.append("<w:EndOfSequence/>")
    return "<n:EnumerateResponse>" + "".join(parts) + "</n:EnumerateResponse>"


def pull_body(context: str | None, items: Sequence[str], end: bool) -> str:
    """PullResponse: a new context unless last, n:Items, n:EndOfSequence on the last page."""
    ctx = "" if end else f"<n:EnumerationContext>{context}</n:EnumerationContext>"
    eos = "<n:EndOfSequence/>" if end else ""
    return f"<n:PullResponse>{ctx}<n:Items>{''.join(items)}</n:Items>{eos}</n:PullResponse>"


def _is_kerberos(token: str) -> bool:
    """A Negotiate token that is not NTLM: a raw Kerberos or a SPNEGO one (both start with 0x60)."""
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return raw[:1] == b"\x60"


# --------------------------------------------------------------------------- message encryption


def encrypt_message(ctx: Any, plain: bytes, protocol: str = ENCRYPTED_PROTOCOL) -> bytes:
    """Seal ``plain`` and frame it as [MS-WSMV] 2.2.9.1 / pywinrm's winrm/encryption.py expects.

    ``protocol`` is SPNEGO's (NTLM) or CredSSP's; CredSSP seals parts of at most 16 KiB, each
    framed on its own (``encrypted_content_type`` then says ``multipart/x-multi-encrypted``).
    """
    size = CREDSSP_CHUNK if protocol == CREDSSP_ENCRYPTED_PROTOCOL else max(1, len(plain))
    parts = []
    for start in range(0, max(1, len(plain)), size):
        piece = plain[start : start + size]
        wrapped = ctx.wrap_winrm(piece)
        header, data = bytes(wrapped.header), bytes(wrapped.data)
        parts.append(
            MIME_BOUNDARY
            + b"\r\n\tContent-Type: "
            + protocol.encode()
            + b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(piece)).encode()
            + b"\r\n"
            + MIME_BOUNDARY
            + b"\r\n\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", len(header))
            + header
            + data
        )
    return b"".join(parts) + MIME_BOUNDARY + b"--\r\n"


def sealed_protocol(content_type: str) -> str | None:
    """The ``protocol`` of a multipart/encrypted (or x-multi-encrypted) body, None when not sealed."""
    lowered = content_type.lower()
    if not lowered.startswith(("multipart/encrypted", "multipart/x-multi-encrypted")):
        return None
    match = re.search(r'protocol="?([^";]+)', content_type, re.IGNORECASE)
    return match.group(1) if match else ""


def encrypted_content_type(protocol: str, length: int) -> str:
    """The Content-Type of a sealed body of ``length`` plain bytes."""
    multi = protocol == CREDSSP_ENCRYPTED_PROTOCOL and length > CREDSSP_CHUNK
    kind = "multipart/x-multi-encrypted" if multi else "multipart/encrypted"
    return f'{kind};protocol="{protocol}";boundary="Encrypted Boundary"'


def decrypt_message(ctx: Any, body: bytes) -> bytes:
    """Unframe and unseal a request body; raises ValueError on any mismatch."""
    parts = [p for p in body.split(MIME_BOUNDARY + b"\r\n") if p]
    if len(parts) < 2:
        raise ValueError("not a multipart/encrypted body")
    plain = b""
    for header, payload in zip(parts[0::2], parts[1::2], strict=False):
        match = re.search(rb"Length=(\d+)", header)
        if match is None:
            raise ValueError("no OriginalContent length")
        if payload.endswith(MIME_BOUNDARY + b"--\r\n"):
            payload = payload[: -len(MIME_BOUNDARY + b"--\r\n")]
        prefix = b"\tContent-Type: application/octet-stream\r\n"
        if not payload.startswith(prefix):
            raise ValueError("missing octet-stream part")
        stream = payload[len(prefix) :]
        (sig_len,) = struct.unpack("<i", stream[:4])
        chunk = bytes(ctx.unwrap_winrm(stream[4 : 4 + sig_len], stream[4 + sig_len :]))
        if len(chunk) != int(match.group(1)):
            raise ValueError("decrypted length does not match OriginalContent")
        plain += chunk
    return plain


# --------------------------------------------------------------------------- request model


@dataclass
class RequestRecord:
    """What the client sent (and what it got), for tests to assert on."""

    action: str
    action_uri: str | None
    resource_uri: str | None
    wql: str | None
    max_elements: int | None
    optimize: bool
    max_envelope_size: int | None
    user: str | None
    encrypted: bool
    connection: int
    operation_timeout: str | None = None
    message_id: str | None = None
    context_in: str | None = None
    context_out: str | None = None
    items: int = 0
    end_of_sequence: bool = False
    fault: str | None = None
    status: int | None = None
    envelope_bytes: int = 0
    bytes_out: int = 0
    class_name: str | None = None


@dataclass
class _Request:
    action_uri: str
    message_id: str | None
    resource_uri: str | None
    max_envelope_size: int | None
    operation_timeout: str | None
    body: ET.Element | None

    @property
    def action(self) -> str:
        return _SHORT_ACTIONS.get(self.action_uri, self.action_uri)


_NSMAP = {"s": NS_S, "a": NS_A, "n": NS_N, "w": NS_W}


def _int_or_none(element: ET.Element | None, what: str) -> int | None:
    if element is None or element.text is None:
        return None
    try:
        return int(element.text.strip())
    except ValueError:
        raise make_fault("schema_validation", detail=f"{what} is not an integer.") from None


def parse_request(data: bytes) -> _Request:
    """Parse the SOAP header fields the server acts on; malformed XML -> SchemaValidationError."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise make_fault("schema_validation", detail=str(exc)) from None
    header = root.find("s:Header", _NSMAP)
    body = root.find("s:Body", _NSMAP)
    if root.tag != f"{{{NS_S}}}Envelope" or header is None:
        raise make_fault("schema_validation", detail="not a SOAP 1.2 envelope")

    def text(path: str) -> str | None:
        element = header.find(path, _NSMAP)
        return element.text.strip() if element is not None and element.text else None

    return _Request(
        action_uri=text("a:Action") or "",
        message_id=text("a:MessageID"),
        resource_uri=text("w:ResourceURI"),
        max_envelope_size=_int_or_none(header.find("w:MaxEnvelopeSize", _NSMAP), "MaxEnvelopeSize"),
        operation_timeout=text("w:OperationTimeout"),
        body=body,
    )


# --------------------------------------------------------------------------- enumeration state


_RenderCache = dict[tuple[int, str, "tuple[str, ...] | None"], tuple[Mapping[str, Any], str, int]]


@dataclass
class _Enumeration:
    user: str
    rows: list[Mapping[str, Any]]
    class_name: str
    class_uri: str
    properties: tuple[str, ...] | None
    pos: int = 0
    last_used: float = field(default_factory=time.monotonic)
    # Shared by the server's enumerations until its data changes: an instance is rendered once,
    # not once per poll (a million-row benchmark would otherwise spend its time here).
    cache: _RenderCache | None = None

    def render(self, row: Mapping[str, Any]) -> str:
        if self.properties is None:
            return render_instance(self.class_name, self.class_uri, row)
        return render_fragment(self.properties, row)

    def render_sized(self, row: Mapping[str, Any]) -> tuple[str, int]:
        """The instance's XML and its size in UTF-8 bytes, from the cache when it holds this row."""
        if self.cache is None:
            text = self.render(row)
            return text, len(text.encode("utf-8"))
        key = (id(row), self.class_uri, self.properties)
        hit = self.cache.get(key)
        if hit is not None and hit[0] is row:  # the entry keeps the row alive: its id stays its own
            return hit[1], hit[2]
        text = self.render(row)
        size = len(text.encode("utf-8"))
        self.cache[key] = (row, text, size)
        return text, size

    @property
    def done(self) -> bool:
        return self.pos >= len(self.rows)


@dataclass
class _Target:
    namespace_path: str  # as written in the URI (slashes)
    namespace_key: str  # lower-case, backslashes
    class_part: str


def parse_resource_uri(uri: str | None) -> _Target:
    """Split ``.../wmi/<ns path>/<Class or *>``; anything else is an invalid resource URI."""
    if not uri or not uri.lower().startswith(WMI_URI_PREFIX):
        raise make_fault("invalid_namespace_uri", detail=f"Resource URI: {uri}")
    rest = uri[len(WMI_URI_PREFIX) :].split("?", 1)[0].strip("/")
    ns_path, _, class_part = rest.rpartition("/")
    if not ns_path or not class_part:
        raise make_fault("invalid_namespace_uri", detail=f"Resource URI: {uri}")
    return _Target(ns_path, ns_path.replace("/", "\\").lower(), class_part)


# --------------------------------------------------------------------------- the server


class WSManServer:
    """The test WS-Management server; see the module docstring for the full contract."""

    _replay: _Replay | None = None  # set by replay(): the capture answering instead of the data set

    def __init__(
        self,
        dataset: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
        *,
        users: Mapping[str, str] | None = None,
        auth: Iterable[str] = ("basic", "ntlm"),
        denied_users: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        cert: tuple[str, str] | None = None,
        allow_unencrypted: bool = True,
        cbt: str | bool = "relaxed",
        client_ca: str | None = None,
        cert_mappings: Iterable[CertMapping] = (),
        tls_max: str | None = None,
        first_batch: int = 1,
        page_bytes: int = DEFAULT_PAGE_BYTES,
        max_envelope_size: int = DEFAULT_MAX_ENVELOPE_SIZE,
        max_batch_items: int = 32000,
        context_ttl: float = 60.0,
        max_concurrent_enumerations: int = 1500,
        machine: str = DEFAULT_MACHINE,
        kerberos_keytab: str | None = None,
    ) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the test server only binds to loopback")
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.auth: frozenset[str] = frozenset(a.lower() for a in auth)
        if not self.auth <= set(AUTH_SCHEMES) or not self.auth:
            raise ValueError(f"auth must be a non-empty subset of {'/'.join(AUTH_SCHEMES)}, got {sorted(self.auth)}")
        if ("kerberos" in self.auth) != (kerberos_keytab is not None):
            raise ValueError("auth kerberos and kerberos_keytab go together (the keytab of the HTTP/host principal)")
        self.kerberos_keytab = kerberos_keytab
        self.kerberos_handshakes = 0
        if "certificate" in self.auth and not (tls and client_ca):
            raise ValueError("auth certificate needs tls=True and client_ca (the CA that issues client certificates)")
        self.cbt = {True: "relaxed", False: "none"}.get(cbt, cbt) if isinstance(cbt, bool) else cbt.lower()
        if self.cbt not in CBT_LEVELS:
            raise ValueError(f"cbt must be one of {', '.join(CBT_LEVELS)}, got {cbt!r}")
        self.cert_mappings: list[CertMapping] = list(cert_mappings)
        self.denied_users = {u.lower() for u in denied_users}
        self.allow_unencrypted = allow_unencrypted
        self.first_batch = first_batch
        self.page_bytes = page_bytes
        self.max_envelope_size = max_envelope_size
        self.max_batch_items = max_batch_items
        self.context_ttl = context_ttl
        self.max_concurrent_enumerations = max_concurrent_enumerations
        self.machine = machine
        # What an authenticated Identify answers (Windows Server 2022's values).
        self.product_vendor = "Microsoft Corporation"
        self.product_version = "OS: 10.0.20348 SP: 0.0 Stack: 3.0"
        self.delay: float = 0.0
        self.drop_connection_after_requests: int | None = None
        self.connections_accepted = 0
        self.ntlm_handshakes = 0
        self.credssp_handshakes = 0
        self.certificate_logons = 0
        self.auth_failures = 0
        self.tls_failures = 0

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._stop_event = threading.Event()
        self._data: dict[str, dict[str, tuple[str, list[Mapping[str, Any]]]]] = {}
        # Instances rendered and WQL selections made, kept until the data changes (see set_dataset).
        self._render_cache: _RenderCache = {}
        self._selections: dict[tuple[int, str], tuple[list[Mapping[str, Any]], _Selection]] = {}
        self._schemas: dict[int, tuple[list[Mapping[str, Any]], dict[str, str]]] = {}
        self._contexts: dict[str, _Enumeration] = {}
        self._log: list[RequestRecord] = []
        # (action, kind, lower-case class name or None for any class)
        self._faults: deque[tuple[str, str, str | None]] = deque()
        self._corruptions: deque[tuple[str, str, str | None]] = deque()
        self.oversized_bytes = 20 * 1024 * 1024
        self._hang: frozenset[str] = frozenset()
        self._hang_classes: frozenset[str] = frozenset()  # lower-case class names
        self._class_faults: dict[str, str] = {}  # lower-case class name -> fault kind
        self._refuse_like: dict[str, str] = {}  # lower-case class name -> fault kind for a WQL LIKE
        self._hang_on_connect = False
        self._reset_mid_pull = 0
        self._stall_after_pages: int | None = None
        self._pulls_served = 0
        self._connections: dict[int, socket.socket] = {}
        self._thread: threading.Thread | None = None
        self._tmpdir: str | None = None
        self.set_dataset(dataset or {})

        self.tls = tls
        self.ca_file: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self._cbt: Any = None
        self._client_cas: list[Any] = []
        if tls:
            self._setup_tls(cert, client_ca)
            if tls_max is not None:
                assert self._ssl is not None
                self._ssl.maximum_version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[tls_max]
        self._httpd = _HTTPServer(self, host, port)

    # ----------------------------------------------------------------- lifecycle

    def _setup_tls(self, cert: tuple[str, str] | None, client_ca: str | None) -> None:
        if cert is None:
            self._tmpdir = tempfile.mkdtemp(prefix="wsman-cert-")
            cert = make_self_signed_cert(self._tmpdir)
        self.ca_file = cert[0]
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.load_cert_chain(cert[0], cert[1])
        # What an NTLM client binds to: this certificate (RFC 5929 tls-server-end-point).
        self._cbt = _channel_bindings(cert[0])
        if "certificate" in self.auth and client_ca is not None:
            from cryptography import x509

            # Client certificates must chain to client_ca: required when certificates are the only
            # way in, else asked for (a client of another scheme may send none, as to Windows).
            self._ssl.load_verify_locations(client_ca)
            self._ssl.verify_mode = ssl.CERT_REQUIRED if self.auth == {"certificate"} else ssl.CERT_OPTIONAL
            with open(client_ca, "rb") as fh:
                self._client_cas = x509.load_pem_x509_certificates(fh.read())

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The endpoint for pywinrm, e.g. ``http://127.0.0.1:PORT/wsman``."""
        host = str(self._httpd.server_address[0])
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/wsman"

    def start(self) -> WSManServer:
        """Start serving in a daemon thread (idempotent); registers NTLM users first."""
        if self._thread is not None:
            return self
        if self.auth & {"ntlm", "credssp"}:
            _NtlmUserFile.register(id(self), self.users)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="wsman-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly: wake hanging handlers, close every connection and the listening socket."""
        with self._cond:
            already = self._stop_event.is_set()
            self._stop_event.set()
            self._cond.notify_all()
        if already:
            return
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
        with self._lock:
            sockets = list(self._connections.values())
        for sock in sockets:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        _NtlmUserFile.unregister(id(self))
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> WSManServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stopped(self) -> bool:
        return self._stop_event.is_set()

    # ----------------------------------------------------------------- data

    def set_dataset(self, dataset: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]) -> None:
        """Replace all data; open enumerations keep the snapshot they started with."""
        data: dict[str, dict[str, tuple[str, list[Mapping[str, Any]]]]] = {}
        for namespace, classes in dataset.items():
            key = namespace.replace("/", "\\").lower()
            data[key] = {name.lower(): (name, list(rows)) for name, rows in classes.items()}
        with self._lock:
            self._data = data
            self._render_cache = {}
            self._selections = {}
            self._schemas = {}

    def set_rows(self, namespace: str, class_name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Create or replace one class's instances (creating the namespace if needed)."""
        key = namespace.replace("/", "\\").lower()
        with self._lock:
            classes = dict(self._data.get(key, {}))
            classes[class_name.lower()] = (class_name, list(rows))
            self._data = {**self._data, key: classes}
            self._render_cache = {}
            self._selections = {}
            self._schemas = {}

    def remove_class(self, namespace: str, class_name: str) -> None:
        """Make a class unknown in a namespace, as on a provider that does not have it: a class URI
        then gets ``invalid_class`` (0x80041010) and a WQL query ``n:CannotProcessFilter`` with the
        nested 0x80041010, while the namespace's other classes keep answering."""
        key = namespace.replace("/", "\\").lower()
        with self._lock:
            classes = dict(self._data.get(key, {}))
            classes.pop(class_name.lower(), None)
            self._data = {**self._data, key: classes}
            self._render_cache = {}
            self._selections = {}
            self._schemas = {}

    # ----------------------------------------------------------------- log, counters

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def requests_of(self, class_name: str, action: str | None = None) -> list[RequestRecord]:
        """The logged requests about ``class_name``, optionally of one action ("enumerate", "pull",
        "release"); both match case-insensitively ("Enumerate" as the spec spells it works too)."""
        key = _class_key(class_name)
        wanted = None if action is None else action.lower()
        return [
            r for r in self.requests
            if _class_key(r.class_name) == key and (wanted is None or r.action.lower() == wanted)
        ]

    def replay(self, directory: str | os.PathLike[str]) -> None:
        """Answer every SOAP request from the capture in ``directory`` (see the module docstring)."""
        from exporter.capture import load_capture

        replay = _Replay(load_capture(directory), self.machine)
        with self._lock:
            self._replay = replay

    @property
    def replay_unmatched(self) -> list[str]:
        """The requests the capture being replayed had no reply for, described (empty when all matched)."""
        replay = self._replay
        return [] if replay is None else replay.unmatched_requests()

    def items_served(self, class_name: str) -> int:
        """Instances of ``class_name`` sent in successful replies (Enumerate and Pull), as logged."""
        return sum(r.items for r in self.requests_of(class_name) if r.status == 200)

    def open_contexts(self) -> int:
        with self._lock:
            self._purge_expired()
            return len(self._contexts)

    def expire_contexts(self) -> None:
        """Invalidate every open enumeration context now (as if EnumerationTimeoutms elapsed)."""
        with self._lock:
            self._contexts.clear()

    # ----------------------------------------------------------------- injection

    @property
    def hang(self) -> frozenset[str]:
        return self._hang

    @hang.setter
    def hang(self, actions: Iterable[str]) -> None:
        value = frozenset(a.lower() for a in actions)
        if not value <= INJECTABLE_ACTIONS:
            raise ValueError(f"hang takes {sorted(INJECTABLE_ACTIONS)}, got {sorted(value)}")
        with self._cond:
            self._hang = value
            self._cond.notify_all()

    @property
    def hang_on_connect(self) -> bool:
        return self._hang_on_connect

    @hang_on_connect.setter
    def hang_on_connect(self, value: bool) -> None:
        with self._cond:
            self._hang_on_connect = value
            self._cond.notify_all()

    @property
    def stall_after_pages(self) -> int | None:
        return self._stall_after_pages

    @stall_after_pages.setter
    def stall_after_pages(self, value: int | None) -> None:
        with self._cond:
            self._stall_after_pages = value
            self._pulls_served = 0
            self._cond.notify_all()

    @property
    def reset_mid_pull(self) -> int:
        return self._reset_mid_pull

    @reset_mid_pull.setter
    def reset_mid_pull(self, value: int | bool) -> None:
        with self._lock:
            self._reset_mid_pull = int(value)

    @property
    def hang_classes(self) -> frozenset[str]:
        return self._hang_classes

    @hang_classes.setter
    def hang_classes(self, class_names: Iterable[str]) -> None:
        with self._cond:
            self._hang_classes = frozenset(name.lower() for name in class_names)
            self._cond.notify_all()

    @property
    def class_faults(self) -> dict[str, str]:
        """A copy of the persistent per-class faults: lower-case class name -> fault kind."""
        with self._lock:
            return dict(self._class_faults)

    @class_faults.setter
    def class_faults(self, faults: Mapping[str, str]) -> None:
        value = {name.lower(): kind for name, kind in faults.items()}
        unknown = sorted(kind for kind in value.values() if kind not in FAULT_KINDS)
        if unknown:
            raise ValueError(f"class_faults kinds must be in {sorted(FAULT_KINDS)}, got {unknown}")
        with self._lock:
            self._class_faults = value

    @property
    def refuse_like(self) -> dict[str, str]:
        """A copy of the classes whose LIKE queries are refused: lower-case class name -> fault kind."""
        with self._lock:
            return dict(self._refuse_like)

    @refuse_like.setter
    def refuse_like(self, faults: Mapping[str, str]) -> None:
        value = {name.lower(): kind for name, kind in faults.items()}
        unknown = sorted(kind for kind in value.values() if kind not in FAULT_KINDS)
        if unknown:
            raise ValueError(f"refuse_like kinds must be in {sorted(FAULT_KINDS)}, got {unknown}")
        with self._lock:
            self._refuse_like = value

    def fault_next(self, action: str, kind: str, times: int = 1, class_name: str | None = None) -> None:
        """Answer the next ``times`` requests of ``action`` (or "any") with the fault ``kind``.

        With ``class_name``, only requests about that class (see ``RequestRecord.class_name``)
        take them; requests about other classes pass by without using them up.
        """
        if action not in INJECTABLE_ACTIONS:
            raise ValueError(f"action must be one of {sorted(INJECTABLE_ACTIONS)}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.extend([(action, kind, _class_key(class_name))] * times)

    def corrupt_next(self, action: str, kind: str, times: int = 1, class_name: str | None = None) -> None:
        """Spoil the next ``times`` successful replies to ``action`` (or "any") the way ``kind`` says.

        With ``class_name``, only replies about that class are spoiled (as ``fault_next``).
        """
        if action not in INJECTABLE_ACTIONS:
            raise ValueError(f"action must be one of {sorted(INJECTABLE_ACTIONS)}")
        if kind not in CORRUPT_KINDS:
            raise ValueError(f"kind must be one of {sorted(CORRUPT_KINDS)}")
        with self._lock:
            self._corruptions.extend([(action, kind, _class_key(class_name))] * times)

    def clear_injections(self) -> None:
        """Forget every queued fault and corruption (``class_faults`` and the hangs stay as set)."""
        with self._lock:
            self._faults.clear()
            self._corruptions.clear()

    @staticmethod
    def _take_queued(queue: deque[tuple[str, str, str | None]], action: str, class_name: str | None) -> str | None:
        """Remove and return the first queued kind that applies to this action and class."""
        key = _class_key(class_name)
        for i, (wanted, kind, wanted_class) in enumerate(queue):
            if wanted in (action, "any") and wanted_class in (None, key):
                del queue[i]
                return kind
        return None

    def _take_corruption(self, action: str, class_name: str | None = None) -> str | None:
        with self._lock:
            return self._take_queued(self._corruptions, action, class_name)

    def _corrupt(self, kind: str, reply: bytes) -> bytes:
        if kind == "malformed":
            return reply.replace(b"</s:Body>", b"</s:Bodyy>", 1)
        if kind == "truncated":
            return reply[: len(reply) // 2]
        if kind == "bomb":
            return _BOMB_DOCTYPE.encode() + reply.replace(b"<s:Body>", b"<s:Body>&lol9;", 1)
        if kind == "oversized":
            return reply.replace(b"<s:Body>", b"<s:Body>" + b" " * max(0, self.oversized_bytes - len(reply)), 1)
        return reply.replace(b"<s:Body>", b"<s:Body>\xff\xfe", 1)  # non_utf8

    def _take_injected_fault(self, action: str, class_name: str | None = None) -> str | None:
        with self._lock:
            persistent = self._class_faults.get(class_name.lower()) if class_name else None
            if persistent is not None:
                return persistent
            return self._take_queued(self._faults, action, class_name)

    def _take_reset(self) -> bool:
        with self._lock:
            if self._reset_mid_pull > 0:
                self._reset_mid_pull -= 1
                return True
            return False

    def _should_hang(self, action: str, class_name: str | None = None) -> bool:
        if action in self._hang or "any" in self._hang:
            return True
        if class_name is not None and class_name.lower() in self._hang_classes:
            return True
        stall = self._stall_after_pages
        return action == "pull" and stall is not None and self._pulls_served >= stall

    def wait_while(self, predicate: Callable[[], bool]) -> bool:
        """Block while ``predicate()`` holds; False if the server stopped meanwhile."""
        with self._cond:
            self._cond.wait_for(lambda: self._stop_event.is_set() or not predicate())
            return not self._stop_event.is_set()

    def sleep_delay(self) -> None:
        """The simulated round-trip: sleep ``delay`` seconds, cut short by stop()."""
        if self.delay > 0:
            self._stop_event.wait(self.delay)

    # ----------------------------------------------------------------- connections, users

    def _register_connection(self, sock: socket.socket) -> int:
        with self._lock:
            self.connections_accepted += 1
            serial = self.connections_accepted
            self._connections[serial] = sock
            return serial

    def _unregister_connection(self, serial: int) -> None:
        with self._lock:
            self._connections.pop(serial, None)

    def known_user(self, name: str) -> str | None:
        """The configured spelling of ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        return next((u for u in self.users if u.lower() == lowered), None)

    def check_basic(self, user: str, password: str) -> str | None:
        canonical = self.known_user(user)
        if canonical is None or self.users[canonical] != password:
            return None
        return canonical

    def new_ntlm_context(self) -> Any:
        """An NTLM acceptor (SPNEGO or raw NTLM) for one connection; users from ``NTLM_USER_FILE``.

        It is given no channel bindings: pyspnego's acceptor refuses a client that sends none and
        accepts one that sends zeros, which is neither of Windows' levels; ``bindings_refusal``
        checks them instead, after the acceptor verified the response.
        """
        import spnego

        return spnego.server(protocol="negotiate")

    def bindings_refusal(self, token: bytes) -> str | None:
        """Why the channel bindings of an NTLM AUTHENTICATE message are refused at this server's
        ``cbt`` level ([MS-NLMP] 3.2.5.1.2, WinRM's CbtHardeningLevel), or None when accepted.

        Only over TLS (there is nothing to bind to over http).  ``strict``: the client must bind
        this certificate; ``relaxed``: a client that binds nothing (no MsvAvChannelBindings, or
        zeros) is accepted, one that binds another channel is not; ``none``: never checked.
        """
        if self._cbt is None or self.cbt == "none":
            return None
        from hashlib import md5

        sent = ntlm_channel_bindings(token)
        if sent is None or sent == bytes(16):
            return "no channel binding token" if self.cbt == "strict" else None
        if sent != md5(self._cbt.pack()).digest():
            return "channel binding token of another channel"
        return None

    def new_credssp_context(self) -> Any:
        """A CredSSP acceptor for one connection: TLS inside, NTLM (``NTLM_USER_FILE``) in that."""
        import spnego

        inner = _WindowsLogonStatus(spnego.server(protocol="negotiate"))
        return spnego.server(protocol="credssp", credssp_negotiate_context=inner)

    def check_delegated(self, user: str, credentials: Any) -> bool:
        """Whether the credentials a CredSSP client delegated are ``user``'s own (name and password)."""
        domain = getattr(credentials, "domain_name", "") or ""
        name = getattr(credentials, "username", "") or ""
        delegated = self.known_user(f"{domain}\\{name}" if domain else name)
        return delegated == user and self.users.get(user) == getattr(credentials, "password", None)

    def map_certificate(self, der: bytes) -> str | None:
        """The user a verified client certificate logs on as (``cert_mappings``), or None."""
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes

        cert = x509.load_der_x509_certificate(der)
        issuers = []
        for ca in self._client_cas:
            if ca.subject == cert.issuer:
                with contextlib.suppress(ValueError, TypeError, InvalidSignature):
                    cert.verify_directly_issued_by(ca)
                    issuers.append(ca.fingerprint(hashes.SHA1()).hex().upper())
        names = [n.lower() for n in certificate_names(der)]
        for mapping in self.cert_mappings:
            if mapping.issuer.replace(" ", "").upper() not in issuers:
                continue
            if mapping.subject == "*" or mapping.subject.lower() in names:
                return self.known_user(mapping.user)
        return None

    def new_kerberos_context(self) -> Any:
        """An acceptor keyed by ``kerberos_keytab`` (not the process-wide KRB5_KTNAME), like the
        HTTP/host keys of a Windows computer account."""
        import gssapi
        import spnego

        credential = gssapi.Credentials(usage="accept", store={"keytab": cast(str, self.kerberos_keytab)})
        bindings = self._cbt if self.cbt != "none" else None
        return spnego.server(protocol="kerberos", channel_bindings=bindings, _gssapi_credential=credential)

    # ----------------------------------------------------------------- SOAP processing

    def handle_soap(self, data: bytes, user: str, encrypted: bool, connection: int) -> tuple[int, bytes, RequestRecord]:
        """Process one SOAP request; may block for ``hang``. Returns (HTTP status, envelope, record)."""
        try:
            request = parse_request(data)
        except Fault as fault:
            record = RequestRecord("invalid", None, None, None, None, False, None, user, encrypted, connection)
            self._append(record)
            return self._fault_reply(fault, None, record)
        record = self._record(request, user, encrypted, connection)
        self._append(record)
        replay = self._replay
        answer = None if replay is None else replay.answer(request, record)
        if answer is not None:
            return answer
        if request.body is not None and request.body.find(f"{{{NS_WSMID}}}Identify") is not None:
            record.action = "identify"
            return self._identify_reply(record)
        if not self.wait_while(lambda: self._should_hang(request.action, record.class_name)):
            return 0, b"", record
        try:
            injected = self._take_injected_fault(request.action, record.class_name)
            if injected is not None:
                self._drop_pull_context(request)
                raise make_fault(injected, self.machine)
            body = self._dispatch(request, user, record)
        except Fault as fault:
            return self._fault_reply(fault, request.message_id, record)
        reply = envelope(f"{request.action_uri}Response", request.message_id, body).encode("utf-8")
        corruption = self._take_corruption(request.action, record.class_name)
        if corruption is not None:
            reply = self._corrupt(corruption, reply)
        record.status = 200
        record.envelope_bytes = len(reply)
        return 200, reply, record

    def _identify_reply(self, record: RequestRecord) -> tuple[int, bytes, RequestRecord]:
        """WS-Management Identify ([MS-WSMV] 3.1.4.16) as Windows Server 2022 answers it when
        authenticated: no WS-Addressing headers, the vendor, the OS and stack version."""
        profiles = "".join(
            f"<wsmid:SecurityProfileName>{SECURITY_PROFILES[a]}</wsmid:SecurityProfileName>"
            for a in sorted(self.auth) if a in SECURITY_PROFILES
        )
        reply = (
            f'<s:Envelope xml:lang="en-US" xmlns:s="{NS_S}"><s:Header/><s:Body>'
            f'<wsmid:IdentifyResponse xmlns:wsmid="{NS_WSMID}">'
            f"<wsmid:ProtocolVersion>{NS_W}</wsmid:ProtocolVersion>"
            f"<wsmid:ProductVendor>{xml_text(self.product_vendor)}</wsmid:ProductVendor>"
            f"<wsmid:ProductVersion>{xml_text(self.product_version)}</wsmid:ProductVersion>"
            f"<wsmid:SecurityProfiles>{profiles}</wsmid:SecurityProfiles>"
            "</wsmid:IdentifyResponse></s:Body></s:Envelope>"
        ).encode()
        record.status = 200
        record.envelope_bytes = len(reply)
        return 200, reply, record

    def _append(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _fault_reply(
        self, fault: Fault, relates_to: str | None, record: RequestRecord
    ) -> tuple[int, bytes, RequestRecord]:
        reply = fault_envelope(fault, relates_to).encode("utf-8")
        record.fault = fault.kind
        record.status = 500
        record.envelope_bytes = len(reply)
        return 500, reply, record

    def _record(self, request: _Request, user: str, encrypted: bool, connection: int) -> RequestRecord:
        body = request.body
        enum = body.find("n:Enumerate", _NSMAP) if body is not None else None
        pull = body.find("n:Pull", _NSMAP) if body is not None else None
        release = body.find("n:Release", _NSMAP) if body is not None else None
        wql = None
        max_elements = None
        if enum is not None:
            filt = enum.find("w:Filter", _NSMAP)
            wql = (filt.text or "").strip() if filt is not None else None
            max_elements = _safe_int(enum.find("w:MaxElements", _NSMAP))
        elif pull is not None:
            max_elements = _safe_int(pull.find("n:MaxElements", _NSMAP))
        holder = pull if pull is not None else release
        context = holder.find("n:EnumerationContext", _NSMAP) if holder is not None else None
        return RequestRecord(
            action=request.action,
            action_uri=request.action_uri,
            resource_uri=request.resource_uri,
            wql=wql,
            max_elements=max_elements,
            optimize=enum is not None and enum.find("w:OptimizeEnumeration", _NSMAP) is not None,
            max_envelope_size=request.max_envelope_size,
            user=user,
            encrypted=encrypted,
            connection=connection,
            operation_timeout=request.operation_timeout,
            message_id=request.message_id,
            context_in=(context.text or "").strip() if context is not None else None,
            class_name=self._class_of(request, enum, context),
        )

    def _class_of(self, request: _Request, enum: ET.Element | None, context: ET.Element | None) -> str | None:
        """The class a request is about: from the class URI or the WQL ``FROM`` of an Enumerate,
        from its enumeration for a Pull or Release; spelled as the data set spells it when known."""
        if enum is None:
            if context is None:
                return None
            with self._lock:
                found = self._contexts.get((context.text or "").strip())
            return found.class_name if found is not None else None
        try:
            target = parse_resource_uri(request.resource_uri)
        except Fault:
            return None
        name = target.class_part
        if name == "*":
            filt = enum.find("w:Filter", _NSMAP)
            match = _WQL_FROM.search(filt.text or "") if filt is not None else None
            if match is None:
                return None
            name = match.group(1)
        with self._lock:
            known = self._data.get(target.namespace_key, {}).get(name.lower())
        return known[0] if known is not None else name

    def _dispatch(self, request: _Request, user: str, record: RequestRecord) -> str:
        if request.action == "enumerate":
            return self._enumerate(request, user, record)
        if request.action == "pull":
            return self._pull(request, user, record)
        if request.action == "release":
            return self._release(request, user)
        raise make_fault("action_not_supported", self.machine, f"Action: {request.action_uri}")

    # ----------------------------------------------------------------- Enumerate

    def _enumerate(self, request: _Request, user: str, record: RequestRecord) -> str:
        element = request.body.find("n:Enumerate", _NSMAP) if request.body is not None else None
        if element is None:
            raise make_fault("schema_validation", self.machine, "Enumerate body missing.")
        target = parse_resource_uri(request.resource_uri)
        self._check_access(target, user)
        classes = self._namespace(target)
        class_name, rows, properties = self._select(element, target, classes)
        enum = _Enumeration(
            user.lower(), rows, class_name, f"{WMI_URI_PREFIX}{target.namespace_path}/{class_name}", properties,
            cache=self._render_cache,
        )
        self._check_quota(user)
        limit = self._envelope_limit(request)
        items: list[str] | None = None
        if element.find("w:OptimizeEnumeration", _NSMAP) is not None:
            wanted = _int_or_none(element.find("w:MaxElements", _NSMAP), "MaxElements")
            count = min(self.first_batch, wanted or self.first_batch, self.max_batch_items)
            skeleton = enumerate_body(_new_uuid(), [], True)
            overhead = len(envelope(ACTION_ENUMERATE + "Response", request.message_id, skeleton))
            items = self._take_page(enum, count, limit - overhead)
        context = None if items is not None and enum.done else self._store(enum)
        record.items = len(items or [])
        record.context_out = context
        record.end_of_sequence = context is None
        return enumerate_body(context, items, context is None)

    def _check_access(self, target: _Target, user: str) -> None:
        if user.lower() in self.denied_users and target.namespace_key.startswith("root\\sms"):
            raise make_fault("access_denied", self.machine)

    def _namespace(self, target: _Target) -> dict[str, tuple[str, list[Mapping[str, Any]]]]:
        with self._lock:
            classes = self._data.get(target.namespace_key)
        if classes is None:
            raise make_fault("invalid_namespace", self.machine)
        return classes

    def _select(
        self, element: ET.Element, target: _Target, classes: Mapping[str, tuple[str, list[Mapping[str, Any]]]]
    ) -> tuple[str, list[Mapping[str, Any]], tuple[str, ...] | None]:
        """Resolve class, rows and shape from a class URI or a ``*`` URI with a WQL filter."""
        filt = element.find("w:Filter", _NSMAP)
        if target.class_part != "*":
            if filt is not None:
                raise make_fault("cannot_process_filter", self.machine, "A WQL filter needs a '*' resource URI.")
            found = classes.get(target.class_part.lower())
            if found is None:
                raise make_fault("invalid_class", self.machine)
            return found[0], found[1], None
        if filt is None:
            raise make_fault("cannot_process_filter", self.machine, "The filter is missing.")
        if filt.get("Dialect") != WQL_DIALECT:
            raise make_fault("cannot_process_filter", self.machine, f"Unsupported dialect {filt.get('Dialect')}.")
        return self._run_wql(filt.text or "", classes)

    def _run_wql(
        self, text: str, classes: Mapping[str, tuple[str, list[Mapping[str, Any]]]]
    ) -> tuple[str, list[Mapping[str, Any]], tuple[str, ...] | None]:
        try:
            query = parse_wql(text)
        except WqlError as exc:
            raise make_fault("cannot_process_filter", self.machine, str(exc)) from None
        found = classes.get(query.class_name.lower())
        if found is None:
            raise make_fault("cannot_process_filter", self.machine, "Invalid class.", WBEM_E_INVALID_CLASS)
        class_name, rows = found
        with self._lock:
            refused = self._refuse_like.get(class_name.lower()) if query.likes else None
        if refused is not None:
            detail = f"LIKE on {', '.join(sorted(query.likes))} is not supported."
            raise make_fault(refused, self.machine, detail if refused == "cannot_process_filter" else "")
        with self._lock:
            cached = self._selections.get((id(rows), text))
        if cached is not None and cached[0] is rows:  # the same query on the same, unchanged rows
            return cached[1]
        schema = self._schema(rows)
        unknown = sorted(n for n in query.referenced if schema and n not in schema)
        if unknown:
            raise make_fault("cannot_process_filter", self.machine, f"Unknown property {unknown[0]}.")
        properties = None
        if query.properties is not None:
            properties = tuple(_sorted_names({schema.get(p.lower(), p) for p in query.properties}))
        selected = [row for row in rows if query.where(row)] if query.where else list(rows)
        selection = (class_name, selected, properties)
        with self._lock:
            self._selections[(id(rows), text)] = (rows, selection)
        return selection

    def _schema(self, rows: list[Mapping[str, Any]]) -> dict[str, str]:
        """Lower-case property name -> name, over every row; computed once per row list."""
        with self._lock:
            cached = self._schemas.get(id(rows))
        if cached is not None and cached[0] is rows:
            return cached[1]
        schema = {k.lower(): k for row in rows for k in row}
        with self._lock:
            self._schemas[id(rows)] = (rows, schema)
        return schema

    def _check_quota(self, user: str) -> None:
        with self._lock:
            self._purge_expired()
            mine = sum(1 for e in self._contexts.values() if e.user == user.lower())
        if mine >= self.max_concurrent_enumerations:
            raise make_fault("quota", self.machine)

    def _envelope_limit(self, request: _Request) -> int:
        asked = request.max_envelope_size or self.max_envelope_size
        return min(asked, self.max_envelope_size)

    def _take_page(self, enum: _Enumeration, max_items: int, budget: int) -> list[str]:
        """Up to ``max_items`` items within page_bytes and the envelope budget; EncodingLimit if none fit."""
        items: list[str] = []
        size = 0
        while not enum.done and len(items) < max_items:
            item, length = enum.render_sized(enum.rows[enum.pos])
            if size + length > budget:
                if not items:
                    raise make_fault("encoding_limit", self.machine)
                break
            if items and size + length > self.page_bytes:
                break
            items.append(item)
            size += length
            enum.pos += 1
        return items

    def _store(self, enum: _Enumeration) -> str:
        context = _new_uuid()
        with self._lock:
            enum.last_used = time.monotonic()
            self._contexts[context] = enum
        return context

    def _purge_expired(self) -> None:
        deadline = time.monotonic() - self.context_ttl
        for key in [k for k, e in self._contexts.items() if e.last_used < deadline]:
            del self._contexts[key]

    # ----------------------------------------------------------------- Pull, Release

    def _context_of(self, request: _Request, name: str) -> str:
        element = request.body.find(f"n:{name}/n:EnumerationContext", _NSMAP) if request.body is not None else None
        if element is None:
            raise make_fault("schema_validation", self.machine, f"{name} without EnumerationContext.")
        return (element.text or "").strip()

    def _claim(self, context: str, user: str) -> _Enumeration:
        """Take the enumeration out of the table (its context is single-use) or fault."""
        with self._lock:
            self._purge_expired()
            enum = self._contexts.get(context)
            if enum is None or enum.user != user.lower():
                raise make_fault("invalid_context", self.machine)
            del self._contexts[context]
            return enum

    def _drop_pull_context(self, request: _Request) -> None:
        if request.action != "pull" or request.body is None:
            return
        element = request.body.find("n:Pull/n:EnumerationContext", _NSMAP)
        if element is not None:
            with self._lock:
                self._contexts.pop((element.text or "").strip(), None)

    def _pull(self, request: _Request, user: str, record: RequestRecord) -> str:
        enum = self._claim(self._context_of(request, "Pull"), user)
        pull = cast(ET.Element, cast(ET.Element, request.body).find("n:Pull", _NSMAP))
        wanted = _int_or_none(pull.find("n:MaxElements", _NSMAP), "MaxElements") or 1
        overhead = len(envelope(ACTION_PULL + "Response", request.message_id, pull_body(_new_uuid(), [], True)))
        items = self._take_page(enum, min(wanted, self.max_batch_items), self._envelope_limit(request) - overhead)
        context = None if enum.done else self._store(enum)
        with self._lock:
            self._pulls_served += 1
        record.items = len(items)
        record.context_out = context
        record.end_of_sequence = context is None
        return pull_body(context, items, context is None)

    def _release(self, request: _Request, user: str) -> str:
        self._claim(self._context_of(request, "Release"), user)
        return ""


def _safe_int(element: ET.Element | None) -> int | None:
    try:
        return _int_or_none(element, "value")
    except Fault:
        return None


# --------------------------------------------------------------------------- replay of a capture

_RELATES_TO = re.compile(rb"(<(?:[\w.-]+:)?RelatesTo\b[^>]*>)[^<]*(</)")


class _Replay:
    """The recorded replies of a capture, handed out to the requests that match them (``WSManServer.replay``)."""

    def __init__(self, capture: Capture, machine: str) -> None:
        self._capture = capture
        self._machine = machine
        self._lock = threading.Lock()
        self._queues: dict[tuple[str, ...], deque[ExchangeRecord]] = {}
        self._unmatched: list[str] = []
        for exchange in capture.exchanges:
            if exchange.replayable and exchange.action != "Release":
                known = exchange.action in ("Enumerate", "Pull", "Identify")
                action = exchange.action if known else exchange.action_uri or ""
                key = self._key(action, exchange.resource_uri, exchange.wql, exchange.context)
                self._queues.setdefault(key, deque()).append(exchange)

    @staticmethod
    def _key(action: str, uri: str | None, wql: str | None, context: str | None) -> tuple[str, ...]:
        """Enumerate: (URI, WQL), Pull: the context it carries, anything else: (Action, URI)."""
        action = action.lower()
        if action == "enumerate":
            return ("enumerate", (uri or "").lower(), " ".join((wql or "").split()))
        if action == "pull":
            return ("pull", context or "")
        return (action, (uri or "").lower())

    def unmatched_requests(self) -> list[str]:
        with self._lock:
            return list(self._unmatched)

    def answer(self, request: _Request, record: RequestRecord) -> tuple[int, bytes, RequestRecord] | None:
        """The recorded answer; None for an Identify the capture holds none of (the server answers it)."""
        if request.action == "release":
            record.status = 200
            return 200, envelope(f"{ACTION_RELEASE}Response", request.message_id, "").encode("utf-8"), record
        identify = request.body is not None and request.body.find(f"{{{NS_WSMID}}}Identify") is not None
        action = "Identify" if identify else {"enumerate": "Enumerate", "pull": "Pull"}.get(
            request.action, request.action_uri)
        key = self._key(action, record.resource_uri, record.wql, record.context_in)
        with self._lock:
            queue = self._queues.get(key)
            exchange = queue.popleft() if queue else None
            if exchange is None and not identify:
                self._unmatched.append(_describe_request(record))
        if exchange is None and identify:
            return None
        if identify:
            record.action = "identify"
        if exchange is None:
            reason = f"Replay: the capture holds no reply for this request ({_describe_request(record)}). "
            fault = Fault("replay_unmatched", "s:Receiver", "w:InternalError", reason,
                          wsman_fault_xml(CODE_INTERNAL_ERROR, xml_text(reason), self._machine))
            reply = fault_envelope(fault, request.message_id).encode("utf-8")
            record.fault, record.status, record.envelope_bytes = fault.kind, 500, len(reply)
            return 500, reply, record
        body = self._capture.body(exchange.reply) if exchange.reply is not None else b""
        if request.message_id:
            body = _RELATES_TO.sub(lambda m: m.group(1) + xml_text(request.message_id or "").encode() + m.group(2),
                                   body, count=1)
        status = exchange.status or 200  # replayable: never None
        record.class_name = exchange.class_name
        record.status, record.envelope_bytes = status, len(body)
        return status, body, record


def _describe_request(record: RequestRecord) -> str:
    what = record.wql or record.resource_uri or ""
    context = f" with context {record.context_in}" if record.context_in else ""
    return f"{record.action} {what}{context}".strip()


# --------------------------------------------------------------------------- HTTP layer


class _HTTPServer(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server; TLS is wrapped per connection so handshakes never block accept()."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, wsman: WSManServer, host: str, port: int) -> None:
        self.wsman = wsman
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (socket.getfqdn), which can stall offline."""
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        context = self.wsman._ssl
        if context is not None:
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """One instance per TCP connection: holds what authenticated it (NTLM and CredSSP authenticate
    the connection, not each request) and the security context that seals its messages."""

    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    # Headers and body go out in two writes: with Nagle's algorithm the body of a small reply
    # waited for the client's delayed ACK (about 40 ms a request), which no Windows server does.
    disable_nagle_algorithm = True

    # The connection's handshake: its scheme ("ntlm", "credssp"), its security context (kept
    # afterwards for message encryption) and, once it completed, the user.
    auth_scheme: str | None = None
    auth_ctx: Any = None
    auth_user: str | None = None
    final_token: str | None = None
    cert_user: str | None = None  # the user this connection's client certificate mapped to
    soap_responses = 0
    serial = 0
    aborted = False

    @property
    def wsman(self) -> WSManServer:
        return cast(_HTTPServer, self.server).wsman

    def setup(self) -> None:
        wsman = self.wsman
        self.serial = wsman._register_connection(self.request)
        if wsman.hang_on_connect and not wsman.wait_while(lambda: wsman.hang_on_connect):
            self.aborted = True
        if not self.aborted and isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (OSError, ssl.SSLError) as exc:
                # A client certificate refused here gets its TLS alert from OpenSSL (unknown CA,
                # expired, certificate required); with TLS 1.3 the client reads it after its request.
                log.debug("TLS handshake failed on connection %d: %s", self.serial, exc)
                with wsman._lock:
                    wsman.tls_failures += 1
                self.aborted = True
                self._linger()
        super().setup()

    def _linger(self) -> None:
        """Close after the alert as a server should: FIN, then read what the client still sends
        (with TLS 1.3, its request) until it closes, at most a second.  Closing with that request
        unread would send a TCP reset, which can overtake the alert: the client would see a reset
        or an EOF, at random, instead of the reason."""
        sock = cast(socket.socket, self.request)
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_WR)
            sock.settimeout(1.0)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and socket.socket.recv(sock, 65536):
                pass

    def handle(self) -> None:
        if not self.aborted:
            super().handle()

    def finish(self) -> None:
        self.wsman._unregister_connection(self.serial)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._send(405, b"")

    def do_POST(self) -> None:
        try:
            self._post()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        except Exception:
            log.exception("wsman test server: unexpected error")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(500, b"")

    # ----------------------------------------------------------------- request flow

    def _post(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?", 1)[0].lower() != "/wsman":
            self._send(404, b"")
            return
        user = self._authenticate()
        if user is None:
            return
        protocol = sealed_protocol(self.headers.get("Content-Type", ""))
        if protocol is not None:
            plain = self._decrypt(body, protocol)
            if plain is None:
                return
        elif not body:
            self._send(200, b"")
            return
        elif self.wsman._ssl is None and not self.wsman.allow_unencrypted:
            self._send(401, b"", self._offers())
            return
        else:
            plain = body
        self._answer_soap(plain, user, protocol)

    def _decrypt(self, body: bytes, protocol: str) -> bytes | None:
        """Unseal with this connection's context; a failure is HTTP 400 with no body, as Windows does."""
        try:
            if self.auth_user is None or _SEALING.get(self.auth_scheme or "", "").lower() != protocol.lower():
                raise ValueError(f"no {protocol} context on this connection")
            return decrypt_message(self.auth_ctx, body)
        except Exception:
            log.debug("cannot decrypt request on connection %d", self.serial, exc_info=True)
            self._send(400, b"")
            return None

    def _answer_soap(self, plain: bytes, user: str, protocol: str | None) -> None:
        wsman = self.wsman
        status, reply, record = wsman.handle_soap(plain, user, protocol is not None, self.serial)
        if status == 0:
            self.close_connection = True
            return
        headers: list[tuple[str, str]] = [("Content-Type", SOAP_CONTENT_TYPE)]
        if protocol is not None:
            headers = [("Content-Type", encrypted_content_type(protocol, len(reply)))]
            reply = encrypt_message(self.auth_ctx, reply, protocol)
        record.bytes_out = len(reply)
        if record.action == "pull" and wsman._take_reset():
            self._send_partial_and_reset(status, reply, headers)
            return
        self.soap_responses += 1
        limit = wsman.drop_connection_after_requests
        if limit is None or self.soap_responses < limit:
            self._send(status, reply, headers)
            return
        self._send_then_drop(status, reply, headers)

    # ----------------------------------------------------------------- auth

    def _offers(self) -> list[tuple[str, str]]:
        """One WWW-Authenticate header per scheme offered, in Windows' order."""
        offered = self.wsman.auth | ({"ntlm"} if "kerberos" in self.wsman.auth else set())
        schemes = [_OFFERS[scheme] for scheme in AUTH_SCHEMES if scheme in offered]
        if "ntlm" not in self.wsman.auth and "Negotiate" in schemes:
            schemes.remove("Negotiate")  # Kerberos only: Negotiate still goes first
            schemes.insert(0, "Negotiate")
        return [("WWW-Authenticate", value) for value in schemes]

    def _reject(self, token: tuple[str, bytes] | None = None) -> None:
        """HTTP 401: the offers, or (``token``) the scheme's last word, such as CredSSP's error."""
        with self.wsman._lock:
            self.wsman.auth_failures += 1
        if token is None:
            self._send(401, b"", self._offers())
        else:
            self._send(401, b"", [("WWW-Authenticate", f"{token[0]} {base64.b64encode(token[1]).decode()}")])

    def _fail(self, token: tuple[str, bytes] | None = None) -> None:
        """A handshake failed: forget it (the client starts again from the beginning) and refuse."""
        self.auth_scheme, self.auth_ctx, self.auth_user = None, None, None
        self._reject(token)

    def _begin(self, scheme: str, context: Any) -> None:
        self.auth_scheme, self.auth_ctx, self.auth_user = scheme, context, None

    def _authenticate(self) -> str | None:
        """The user of this request, or None after answering 401 (challenge or rejection).

        One branch per scheme of the Authorization header; a connection that completed an NTLM or
        CredSSP handshake needs no header on its later requests.
        """
        header = self.headers.get("Authorization", "").strip()
        scheme, _, token = header.partition(" ")
        kind, offered = scheme.lower(), self.wsman.auth
        if kind == "basic" and "basic" in offered:
            return self._basic(token.strip())
        if kind in ("negotiate", "kerberos") and "kerberos" in offered and _is_kerberos(token):
            return self._kerberos(scheme, token.strip())
        if kind in ("negotiate", "ntlm") and "ntlm" in offered:
            return self._ntlm(scheme, token.strip())
        if kind == "credssp" and "credssp" in offered:
            return self._credssp(token.strip())
        if header.lower() == MUTUAL_AUTH and "certificate" in offered:
            return self._certificate()
        if self.auth_user is not None:
            return self.auth_user
        self._send(401, b"", self._offers())
        return None

    def _token(self, token: str) -> bytes | None:
        """A base64 token, or None after refusing it."""
        try:
            return base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            self._fail()
            return None

    def _basic(self, token: str) -> str | None:
        try:
            raw = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            self._reject()
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        name, _, password = text.partition(":")
        user = self.wsman.check_basic(name, password)
        if user is None:
            self._reject()
        return user

    def _ntlm(self, scheme: str, token: str) -> str | None:
        from spnego.exceptions import SpnegoError

        raw = self._token(token)
        if raw is None:
            return None
        if self.auth_scheme != "ntlm" or raw[8:12] == b"\x01\x00\x00\x00" or self.auth_user is not None:
            self._begin("ntlm", self.wsman.new_ntlm_context())
        try:
            out = self.auth_ctx.step(raw)
        except SpnegoError:
            self._fail()
            return None
        if not self.auth_ctx.complete:
            self._send(401, b"", [("WWW-Authenticate", f"{scheme} {base64.b64encode(out or b'').decode()}")])
            return None
        user = self.wsman.known_user(str(self.auth_ctx.client_principal))
        refusal = self.wsman.bindings_refusal(raw) if self.wsman.tls else None
        if user is None or refusal is not None:
            log.debug("NTLM refused on connection %d: %s", self.serial, refusal or "unknown user")
            self._fail()
            return None
        with self.wsman._lock:
            self.wsman.ntlm_handshakes += 1
        self.auth_user = user
        self.final_token = f"{scheme} {base64.b64encode(out).decode()}" if out else None
        return user

    def _kerberos(self, scheme: str, token: str) -> str | None:
        """Accept a Kerberos AP-REQ (one step); the context then seals messages like NTLM's."""
        raw = self._token(token)
        if raw is None:
            return None
        try:
            self._begin("kerberos", self.wsman.new_kerberos_context())
            out = self.auth_ctx.step(raw)
        # Any refusal of the acceptor (pyspnego 0.12.4 may raise AttributeError from a failed step).
        except Exception:
            log.debug("kerberos token refused on connection %d", self.serial, exc_info=True)
            self._fail()
            return None
        if not self.auth_ctx.complete:
            self._fail()
            return None
        with self.wsman._lock:
            self.wsman.kerberos_handshakes += 1
        self.auth_user = str(self.auth_ctx.client_principal)
        self.final_token = f"{scheme} {base64.b64encode(out).decode()}" if out else None
        return self.auth_user

    def _credssp(self, token: str) -> str | None:
        """One leg of a CredSSP handshake ([MS-CSSP]): TLS, then NTLM inside it, the public key
        check, and the credentials the client delegates, which must be the user's own.

        Each leg is answered 401 with ``WWW-Authenticate: CredSSP <token>`` until the client sends
        its credentials; that request (with its body) is then served.  A user the inner NTLM
        refuses gets the TSRequest errorCode Windows sends, STATUS_LOGON_FAILURE; delegated
        credentials that are not the user's get a bare 401, as from Windows.
        """
        from spnego.exceptions import SpnegoError

        raw = self._token(token)
        if raw is None:
            return None
        if self.auth_scheme != "credssp" or self.auth_user is not None:
            self._begin("credssp", self.wsman.new_credssp_context())
        context = self.auth_ctx
        try:
            out = context.step(raw)
        except SpnegoError as exc:
            log.debug("CredSSP refused on connection %d: %s", self.serial, exc)
            self._fail()
            return None
        if context.get_extra_info("auth_stage") == "Authentication failure":
            self._fail(("CredSSP", out or b""))  # the TSRequest with errorCode (_WindowsLogonStatus)
            return None
        if not context.complete:
            if not out:
                self._fail()
                return None
            self._send(401, b"", [("WWW-Authenticate", f"CredSSP {base64.b64encode(out).decode()}")])
            return None
        user = self.wsman.known_user(str(context.client_principal))
        if user is None or not self.wsman.check_delegated(user, context.get_extra_info("client_credential")):
            log.debug("CredSSP: the delegated credentials are not %s's own", user)
            self._fail()
            return None
        with self.wsman._lock:
            self.wsman.credssp_handshakes += 1
        self.auth_user = user
        return user

    def _certificate(self) -> str | None:
        """The user the connection's verified client certificate maps to (``cert_mappings``); a
        request without a certificate, or with an unmapped one, is refused with 401 as by Windows."""
        if self.cert_user is not None:
            return self.cert_user
        der = self.request.getpeercert(binary_form=True) if isinstance(self.request, ssl.SSLSocket) else None
        user = self.wsman.map_certificate(der) if der else None
        if user is None:
            log.debug("client certificate on connection %d: %s", self.serial, "not mapped" if der else "none")
            self._reject()
            return None
        with self.wsman._lock:
            self.wsman.certificate_logons += 1
        self.cert_user = user
        return user

    # ----------------------------------------------------------------- output

    def _send(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.wsman.sleep_delay()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.final_token and status < 400:
            self.send_header("WWW-Authenticate", self.final_token)
            self.final_token = None
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_then_drop(self, status: int, body: bytes, headers: Sequence[tuple[str, str]]) -> None:
        """Answer, then close without ``Connection: close``, so the client sees a dead keep-alive.

        The socket is corked (Linux TCP_CORK) while the response is written and the FIN is queued
        with its last segment: the client cannot finish reading the response before the FIN is
        there, so urllib3 always notices the drop before reusing the connection.  Without that,
        an in-process client could race the close and fail with RemoteDisconnected instead.
        """
        sock = cast(socket.socket, self.request)
        cork = getattr(socket, "TCP_CORK", None)
        if cork is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
        self._send(status, body, headers)
        self.close_connection = True
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_WR)

    def _send_partial_and_reset(self, status: int, body: bytes, headers: Sequence[tuple[str, str]]) -> None:
        """Headers announcing the full length, half the body, then a TCP reset (SO_LINGER 0)."""
        self.wsman.sleep_delay()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True
        sock = cast(socket.socket, self.request)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socket.socket.close(sock)
