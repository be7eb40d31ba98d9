"""SOAP faults as Windows sends them, and the `PollError` each one means.

Faults are read from their raw XML, including what pywinrm's `WSManFaultError` leaves out
(nested `f:ProviderFault`, inner `f:WSManFault`/`f:Message`, `MSFT_WmiError` `MessageID`), and
turned into a `PollError` whose reason and message an administrator can act on (the fault matrix
of docs/troubleshooting.md).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.errors import PollError
from exporter.winrm.envelopes import (
    NS_SOAP,
    NS_WMI_ERROR,
    NS_WSMAN,
    NS_WSMAN_FAULT,
    clean_text,
    parse_xml,
    qname_local,
)

# WMI (WBEM_E_*) and WS-Management (ERROR_WSMAN_*) codes, unsigned.
WBEM_E_FAILED = 0x80041001
WBEM_E_ACCESS_DENIED = 0x80041003
WBEM_E_INVALID_NAMESPACE = 0x8004100E
WBEM_E_INVALID_CLASS = 0x80041010
WBEM_E_INVALID_QUERY = 0x80041017
E_ACCESSDENIED = 0x80070005
ERROR_ACCESS_DENIED = 5
ERROR_INTERNAL_ERROR = 1359
WSMAN_RESOURCE_NOT_FOUND = 0x80338000  # 2150858752, with a:DestinationUnreachable
WSMAN_CANNOT_PROCESS_FILTER = 0x8033801A  # 2150858778
WSMAN_INVALID_ENUMERATION_CONTEXT = 0x8033801B  # 2150858779
WSMAN_ENUMERATE_TIMED_OUT = 0x8033801C
WSMAN_OPERATION_TIMEDOUT = 0x80338029  # 2150858793
WSMAN_CANNOT_PROCESS_FILTER_CLIENT = 0x80338122
WSMAN_ENCODING_LIMIT = 0x80338111
WSMAN_QUOTA_CODES = frozenset({0x803381A5, 0x803381A6})

_HEX_CODE = re.compile(r"\b0x([0-9A-Fa-f]{8})\b")


@dataclass(frozen=True, slots=True)
class Fault:
    """What a SOAP fault says, from every place Windows puts it.

    `codes` holds every numeric code found, unsigned, outermost first: `f:WSManFault Code`
    attributes (nested ones too), `MSFT_WmiError` `error_Code` and `MessageID` HRESULTs, and
    `0x...` codes quoted in the messages. `text` is the most specific message (the innermost
    provider message, else the WMI error message, else the reason).
    """

    code: str
    subcode: str
    reason: str
    details: tuple[str, ...]
    wsman_codes: tuple[int, ...]
    codes: tuple[int, ...]
    text: str

    def has(self, *codes: int) -> bool:
        return any(code in self.codes for code in codes)

    @property
    def is_timed_out(self) -> bool:
        return self.subcode == "TimedOut" or self.has(WSMAN_OPERATION_TIMEDOUT, WSMAN_ENUMERATE_TIMED_OUT)

    @property
    def is_invalid_context(self) -> bool:
        return self.subcode == "InvalidEnumerationContext" or self.has(WSMAN_INVALID_ENUMERATION_CONTEXT)

    @property
    def restartable(self) -> bool:
        """The enumeration can be started again (spec: TimedOut, InvalidEnumerationContext)."""
        return self.is_timed_out or self.is_invalid_context

    @property
    def is_access_denied(self) -> bool:
        return (
            self.subcode == "AccessDenied"
            or self.has(WBEM_E_ACCESS_DENIED, E_ACCESSDENIED)
            or ERROR_ACCESS_DENIED in self.wsman_codes
        )

    @property
    def refuses_query(self) -> bool:
        """The provider refused the query itself: n:CannotProcessFilter or WMI invalid query 0x80041017."""
        return self.subcode == "CannotProcessFilter" or self.has(
            WBEM_E_INVALID_QUERY, WSMAN_CANNOT_PROCESS_FILTER, WSMAN_CANNOT_PROCESS_FILTER_CLIENT
        )

    @property
    def may_be_the_filter(self) -> bool:
        """Whether this fault, on the Enumerate of a slice (a WQL `LIKE` on PackageID), may be the
        provider refusing that filter, so that one enumeration without it is worth trying.

        Any fault may be (a refused query, 0x80041017, `CannotProcessFilter`, is the expected one;
        a provider whose WQL-to-SQL translation fails may just as well answer a generic failure),
        except those about the account (access denied), the time (timed out, context expired) or
        the server's limits (operation quota, envelope size): the query without the filter would
        meet them the same way.
        """
        return not (
            self.is_access_denied
            or self.restartable
            or self.subcode in ("QuotaLimit", "EncodingLimit")
            or self.has(*WSMAN_QUOTA_CODES, WSMAN_ENCODING_LIMIT)
        )


def parse_fault(data: bytes | str) -> Fault:
    """A `Fault` from a fault reply (pywinrm's `WSManFaultError.response`)."""
    root = parse_xml(data)
    fault = root.find(f"{{{NS_SOAP}}}Body/{{{NS_SOAP}}}Fault")
    if fault is None:
        raise PollError("parse", "expected a SOAP fault, found none")
    return fault_from_element(fault)


def fault_from_element(fault: ET.Element) -> Fault:
    code = fault.findtext(f"{{{NS_SOAP}}}Code/{{{NS_SOAP}}}Value") or ""
    subcode = fault.findtext(f"{{{NS_SOAP}}}Code/{{{NS_SOAP}}}Subcode/{{{NS_SOAP}}}Value") or ""
    reason = (fault.findtext(f"{{{NS_SOAP}}}Reason/{{{NS_SOAP}}}Text") or "").strip()
    detail = fault.find(f"{{{NS_SOAP}}}Detail")
    details: tuple[str, ...] = ()
    wsman_codes: list[int] = []
    codes: list[int] = []
    messages: list[str] = []
    if detail is not None:
        # w:FaultDetail is a URI (.../faultDetail/InvalidResourceURI): its last segment says it all.
        details = tuple(
            (el.text or "").strip().rstrip("/").rpartition("/")[2] for el in detail.iter(f"{{{NS_WSMAN}}}FaultDetail")
        )
        _read_wsman_faults(detail, wsman_codes, messages)
        _read_wmi_errors(detail, codes, messages)
    codes[:0] = wsman_codes
    for text in [*messages, reason]:
        codes.extend(int(match, 16) for match in _HEX_CODE.findall(text))
    text = next((m for m in reversed(messages) if m.strip()), reason)
    return Fault(
        code=qname_local(code),
        subcode=qname_local(subcode),
        reason=reason,
        details=details,
        wsman_codes=tuple(_unique(wsman_codes)),
        codes=tuple(_unique(codes)),
        text=text.strip(),
    )


def _read_wsman_faults(detail: ET.Element, codes: list[int], messages: list[str]) -> None:
    """`f:WSManFault Code=...`, possibly holding `f:Message/f:ProviderFault/f:WSManFault/f:Message`.

    Document order puts the outer fault first, so the last non-empty message is the innermost.
    """
    for wsman_fault in detail.iter(f"{{{NS_WSMAN_FAULT}}}WSManFault"):
        number = _int(wsman_fault.get("Code"))
        if number is not None:
            codes.append(number)
        message = wsman_fault.find(f"{{{NS_WSMAN_FAULT}}}Message")
        if message is None:
            continue
        own = (message.text or "").strip()
        if own:
            messages.append(own)
        for provider in message.iter(f"{{{NS_WSMAN_FAULT}}}ProviderFault"):
            provider_text = (provider.text or "").strip()
            if provider_text:
                messages.append(provider_text)


def _read_wmi_errors(detail: ET.Element, codes: list[int], messages: list[str]) -> None:
    for wmi in detail.iter(f"{{{NS_WMI_ERROR}}}MSFT_WmiError"):
        number = _int(wmi.findtext(f"{{{NS_WMI_ERROR}}}error_Code"))
        if number is not None:
            codes.append(number)
        message_id = wmi.findtext(f"{{{NS_WMI_ERROR}}}MessageID") or ""
        codes.extend(int(match, 16) for match in _HEX_CODE.findall(message_id))
        message = (wmi.findtext(f"{{{NS_WMI_ERROR}}}Message") or "").strip()
        if message:
            messages.append(message)


def _int(text: str | None) -> int | None:
    """A code as Windows writes it: decimal, possibly negative (a signed HRESULT), or 0x hex."""
    if text is None:
        return None
    value = text.strip()
    try:
        number = int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None
    return number & 0xFFFFFFFF


def _unique(values: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(values))


def fault_error(fault: Fault, *, namespace: str, class_name: str) -> PollError:
    """The `PollError` for a fault, per the spec's table; the message says what to check.

    Order matters: access denied wins over everything (a denied namespace also looks missing),
    then timeouts, then the WMI codes (more specific than the WS-Management wrapper around them).
    """
    where = f"{class_name} in {namespace}"
    said = clean_text(fault.text)
    if fault.is_access_denied:
        code = _first(fault, WBEM_E_ACCESS_DENIED, E_ACCESSDENIED, ERROR_ACCESS_DENIED)
        return PollError(
            "auth",
            f"access denied reading {where}: the account needs WMI Remote Enable on the namespace "
            f"and membership of Remote Management Users on the SMS Provider ({said})",
            wmi_code=code,
        )
    if fault.is_timed_out:
        code = _first(fault, WSMAN_OPERATION_TIMEDOUT, WSMAN_ENUMERATE_TIMED_OUT)
        return PollError("timeout", f"the provider did not answer within the operation timeout ({said})", wmi_code=code)
    return _wmi_fault(fault, namespace=namespace, class_name=class_name, said=said)


def _wmi_fault(fault: Fault, *, namespace: str, class_name: str, said: str) -> PollError:
    where = f"{class_name} in {namespace}"
    if fault.has(WBEM_E_INVALID_NAMESPACE):
        return PollError(
            "wmi_fault", f"invalid namespace {namespace}: wrong site_code? ({said})", wmi_code=WBEM_E_INVALID_NAMESPACE
        )
    if fault.has(WBEM_E_INVALID_CLASS):
        return PollError(
            "wmi_fault",
            f"invalid class {class_name} in {namespace}: is this host an SMS Provider of that site? ({said})",
            wmi_code=WBEM_E_INVALID_CLASS,
        )
    if (
        fault.subcode == "DestinationUnreachable"
        or "InvalidResourceURI" in fault.details
        or (fault.has(WSMAN_RESOURCE_NOT_FOUND))
    ):
        return PollError(
            "wmi_fault",
            f"resource not found: namespace {namespace} or class {class_name} does not exist "
            f"(wrong site_code?) ({said})",
            wmi_code=_first(fault, WSMAN_RESOURCE_NOT_FOUND) or _best_code(fault),
        )
    if fault.refuses_query:
        return PollError(
            "wmi_fault", f"the provider refused the WQL query on {where} ({said})", wmi_code=_best_code(fault)
        )
    if fault.has(WBEM_E_FAILED) or ERROR_INTERNAL_ERROR in fault.wsman_codes:
        return PollError(
            "wmi_fault",
            f"WMI provider failure reading {where}: see the SMS Provider's smsprov.log ({said})",
            wmi_code=_first(fault, WBEM_E_FAILED) or _best_code(fault),
        )
    if fault.subcode == "QuotaLimit" or fault.has(*WSMAN_QUOTA_CODES):
        return PollError(
            "wmi_fault",
            f"WinRM quota exceeded (too many open operations or shells for this user?) ({said})",
            wmi_code=_first(fault, *WSMAN_QUOTA_CODES) or _best_code(fault),
        )
    if fault.subcode == "EncodingLimit" or fault.has(WSMAN_ENCODING_LIMIT):
        return PollError(
            "wmi_fault",
            f"WinRM envelope size limit hit (MaxEnvelopeSizekb too small?) ({said})",
            wmi_code=_first(fault, WSMAN_ENCODING_LIMIT) or _best_code(fault),
        )
    if fault.is_invalid_context:
        return PollError(
            "wmi_fault",
            f"enumeration context of {where} expired or unknown to the server ({said})",
            wmi_code=WSMAN_INVALID_ENUMERATION_CONTEXT,
        )
    label = fault.subcode or fault.code or "fault"
    return PollError(
        "wmi_fault", f"WS-Management fault {clean_text(label, 60)} reading {where} ({said})", wmi_code=_best_code(fault)
    )


def _first(fault: Fault, *wanted: int) -> int | None:
    return next((code for code in fault.codes if code in wanted), None)


def _best_code(fault: Fault) -> int | None:
    """The most telling code: the first WMI one (0x8004....) if any, else the first code found."""
    wmi = [code for code in fault.codes if code & 0xFFFF0000 == 0x80040000]
    if wmi:
        return wmi[0]
    return fault.codes[0] if fault.codes else None
