"""CredSSP as pywinrm uses it (requests-credssp), with one correction: the provider's answer to
the request that delegated the credentials is that request's answer, whatever its status.

requests-credssp 2.0.0 sends the request again with each CredSSP token until an answer is HTTP
200. The last token carries the delegated credentials; Windows then serves the request itself,
and a SOAP fault comes back as HTTP 500 without a CredSSP token, which requests-credssp takes for
a broken handshake ("Server did not response with a CredSSP token"): an invalid class or an
access denied on a connection's first request would read as refused credentials.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import requests


def answer_after_delegation(transport: Any) -> None:
    """Make a pywinrm `winrm.transport.Transport` of transport credssp build its sessions with
    `_CredSSPAuth` (requests-credssp's handler, corrected as above)."""
    build = transport.build_session

    def build_session() -> requests.Session:
        session: requests.Session = build()
        auth: Any = session.auth
        if type(auth).__name__ == "HttpCredSSPAuth":
            auth.__class__ = _credssp_auth_class(type(auth))
        return session

    transport.build_session = build_session


def _credssp_auth_class(base: Any) -> type:
    """requests-credssp's handler (`base`, imported by pywinrm only when installed), answering with
    whatever follows the delegation. Made once per session, that is once per connection."""

    def _get_credssp_token(self: Any, response: requests.Response, pattern: re.Pattern[str], step_name: str) -> bytes:
        context = self.contexts.get(urlparse(response.url).hostname)
        if response.status_code != 401 and context is not None and context._context.complete:
            # The credentials went with the last token: this is the request's own answer. The
            # handler's loop ends on StopIteration and hands this response on to pywinrm.
            raise StopIteration
        return base._get_credssp_token(response, pattern, step_name)  # type: ignore[attr-defined, no-any-return]

    return type("_CredSSPAuth", (base,), {"_get_credssp_token": _get_credssp_token})
