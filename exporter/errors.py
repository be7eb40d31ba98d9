"""Why a poll failed, in the words of the `reason` label of `sccm_poll_errors_total`."""

from __future__ import annotations

from typing import Literal, get_args

Reason = Literal["timeout", "connection", "auth", "wmi_fault", "parse", "other"]
REASONS: tuple[Reason, ...] = get_args(Reason)


class PollError(Exception):
    """A poll of one target failed.

    `reason` is the label value; `wmi_code` the WMI/WS-Management error code when the provider
    sent one. The message is for the log and must never hold a secret (no password, no
    Authorization header, no full request body).
    """

    def __init__(self, reason: Reason, message: str, *, wmi_code: int | None = None) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.wmi_code = wmi_code

    def __str__(self) -> str:
        text = super().__str__()
        if self.wmi_code is not None:
            return f"{text} (code 0x{self.wmi_code & 0xFFFFFFFF:08X})"
        return text
