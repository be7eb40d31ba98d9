"""The WinRM wing: reading WMI classes from an SMS Provider over WS-Management.

`envelopes` (requests built, replies parsed safely), `faults` (SOAP faults and what they mean),
`pages` (the replies and the readers of their instances), `plan` (what to enumerate), `lanes`
(enumerations at once), `transport` (pywinrm sessions), `errors` (what a failure to talk means)
and `source` (the `WinRMSource` that puts them together).
"""
