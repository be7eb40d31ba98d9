"""The validation kit both configuration files use: key paths, suggestions, how values are shown,
the error list and its getters, and reading the file. test_config.py and test_webconfig.py pin the
messages each file gives; this pins the pieces, so that a change to one shows up here first.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest

from exporter.validation import (
    Checker,
    Style,
    ValidationError,
    item_path,
    key_path,
    missing,
    parse_document,
    read_document,
    suggest,
)

WEB = Style(clip_quoted=False, kind_names=False, string_keys=False)  # as exporter/webconfig.py sets it


class _Error(ValidationError):
    """A caller's own error class, as ConfigError and WebConfigError are."""


def checker(style: Style | None = None, base_dir: str = "/base") -> Checker:
    return Checker(base_dir=base_dir, style=style or Style())


# --- key paths and suggestions ------------------------------------------------------------------


def test_key_paths_join_with_dots_and_index_with_brackets() -> None:
    assert key_path("", "targets") == "targets"  # "" is the top level
    assert key_path("auth", "transport") == "auth.transport"
    assert key_path(item_path("targets", 2), "name") == "targets[2].name"
    assert item_path("defaults.collectors", 0) == "defaults.collectors[0]"
    assert key_path("tls_server_config", 1) == "tls_server_config.1"  # a key YAML read as a number
    assert key_path("", None) == "None"


def test_missing_counts_an_empty_key_as_left_out() -> None:
    assert missing({}, "a")
    assert missing({"a": None}, "a")  # `a:` with nothing after it
    assert not missing({"a": ""}, "a")
    assert not missing({"a": False}, "a")


@pytest.mark.parametrize(
    ("word", "choices", "hint"),
    [
        ("HTTPS", ("https", "http"), "; did you mean 'https'?"),  # case is ignored ...
        ("requireandverifyclientcert", ("NoClientCert", "RequireAndVerifyClientCert"),
         "; did you mean 'RequireAndVerifyClientCert'?"),  # ... and the choice keeps its own
        ("intervall", ("interval", "timeout"), "; did you mean 'interval'?"),
        ("TLS1.3", ("TLS10", "TLS11", "TLS12", "TLS13"), "; did you mean 'TLS13'?"),
        ("zzz", ("interval", "timeout"), ""),  # nothing close: no hint
        (3, ("3", "4"), ""),  # not a string: no hint
        (None, ("none",), ""),
    ],
)  # fmt: skip
def test_suggest_names_the_closest_choice(word: object, choices: tuple[str, ...], hint: str) -> None:
    assert suggest(word, choices) == hint


def test_suggest_case_only_names_a_choice_that_differs_in_case_alone() -> None:
    headers = ("X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy")
    assert suggest("x-frame-options", headers, case_only=True) == "; did you mean 'X-Frame-Options'?"
    assert suggest("X-Frame-Option", headers, case_only=True) == ""  # close, but another name
    assert suggest("Content-Type", headers, case_only=True) == ""
    assert suggest("X-Frame-Option", headers) == "; did you mean 'X-Frame-Options'?"  # without case_only


# --- how values appear in messages --------------------------------------------------------------

LONG = "x" * 80


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, "true"), (False, "false"),  # as YAML writes them
        (3, "3"), (1.5, "1.5"), ("abc", "'abc'"), ("", "''"),
        (LONG, "'" + "x" * 55 + "...'"),  # the quoted text cut to 60 characters, closing quote kept
        ("x" * 58, "'" + "x" * 58 + "'"),  # 60 with its quotes: in full
        (10**70, str(10**70)[:56] + "..."),
        (None, "null"), ([1], "a list"), ({"a": 1}, "a mapping"),
        (datetime.date(2024, 1, 2), "a date"), (datetime.datetime(2024, 1, 2, 3, 4), "a date"),
        (b"\x00", "binary data"), ({1}, "a set"), (object(), "object"),
    ],
)  # fmt: skip
def test_show_gives_short_scalars_as_written_and_others_by_kind(value: object, shown: str) -> None:
    assert Style().show(value) == shown
    assert len(shown) <= 60


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, "true"), (3, "3"), ("abc", "'abc'"),
        (LONG, "'" + "x" * 57 + "...'"),  # the text cut to 57 characters, then quoted
        ("x" * 60, "'" + "x" * 60 + "'"),
        (10**70, str(10**70)),  # numbers in full
        (None, "null"), ([1], "a list"), ({"a": 1}, "a mapping"),
        (datetime.date(2024, 1, 2), "date"), (b"\x00", "bytes"), ({1}, "set"),  # by Python type
    ],
)  # fmt: skip
def test_the_web_configuration_style_shows_values_as_it_always_has(value: object, shown: str) -> None:
    assert WEB.show(value) == shown


def test_a_long_string_keeps_its_escapes_when_cut() -> None:
    assert Style().show("'" * 80) == '"' + "'" * 55 + "...'"
    assert WEB.show("\n" * 80) == "'" + "\\n" * 57 + "...'"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "null"), (True, "true/false"), (3, "an integer"), (1.5, "a number"), ("pw", "a string"),
        ([], "a list"), ({}, "a mapping"), (datetime.date(2024, 1, 2), "a date"), (b"", "binary data"),
        (set(), "a set"), (object(), "object"),
    ],
)  # fmt: skip
def test_kind_names_a_value_without_showing_it(value: object, kind: str) -> None:
    assert Style().kind(value) == kind
    assert checker().kind(value) == kind


# --- the error list -----------------------------------------------------------------------------


def test_errors_are_collected_in_order_each_with_its_key_path() -> None:
    check = checker()
    check.error("targets[0].host", "required")
    check.error("top level", "the configuration is empty")
    assert check.errors == ["targets[0].host: required", "top level: the configuration is empty"]


def test_each_checker_has_its_own_error_list() -> None:
    first, second = checker(), checker()
    first.error("a", "b")
    assert second.errors == []


def test_validation_error_holds_every_message() -> None:
    error = _Error(["a: one", "b: two"])
    assert error.errors == ["a: one", "b: two"]
    assert str(error) == "a: one\nb: two"


def test_resolve_takes_relative_names_from_the_base_folder() -> None:
    check = checker(base_dir="/etc/exporter")
    assert check.resolve("pw.txt") == "/etc/exporter/pw.txt"
    assert check.resolve("./tls/../ca.pem") == "/etc/exporter/ca.pem"
    assert check.resolve("/abs/ca.pem") == "/abs/ca.pem"


# --- keys ---------------------------------------------------------------------------------------


def test_keys_reports_unknown_keys_with_a_suggestion_in_file_order() -> None:
    check = checker()
    check.keys({"zzz": 1, "interval": 1, "intervall": 2}, "defaults", ("interval", "timeout"))
    assert check.errors == [
        "defaults.zzz: unknown key; allowed: interval, timeout",
        "defaults.intervall: unknown key; allowed: interval, timeout; did you mean 'interval'?",
    ]


def test_keys_explains_misplaced_and_refused_keys_and_suggests_only_the_misplaced() -> None:
    check = checker()
    section = {"host": 1, "inline": 2, "hosts": 3, "inlines": 4}
    check.keys(section, "t", ("name",), misplaced={"host": "belongs to winrm"}, refused={"inline": "not supported"})
    assert check.errors == [
        "t.host: belongs to winrm",
        "t.inline: not supported",
        "t.hosts: unknown key; allowed: name; did you mean 'host'?",  # works elsewhere: worth naming
        "t.inlines: unknown key; allowed: name",  # works nowhere: not suggested
    ]


def test_keys_at_the_top_level_have_no_prefix() -> None:
    check = checker()
    check.keys({"target": []}, "", ("defaults", "targets"))
    assert check.errors == ["target: unknown key; allowed: defaults, targets; did you mean 'targets'?"]


def test_a_key_that_is_not_a_string_is_reported_at_its_mapping() -> None:
    check = checker()
    check.keys({1: "a", 2.5: "b", False: "c"}, "", ("defaults",))
    check.keys({None: "c"}, "auth", ("transport",))
    assert check.errors == [
        "top level: key 1 is not a string; allowed: defaults",
        "top level: key 2.5 is not a string; allowed: defaults",
        "top level: key false is not a string; allowed: defaults",
        "auth: key null is not a string; allowed: transport",
    ]


def test_the_web_style_reports_a_key_that_is_not_a_string_as_unknown() -> None:
    check = checker(WEB)
    check.keys({1: "a"}, "tls_server_config", ("cert_file",))
    check.keys({None: "b"}, "", ("tls_server_config",))
    assert check.errors == [
        "tls_server_config.1: unknown key; allowed: cert_file",
        "None: unknown key; allowed: tls_server_config",
    ]


# --- getters ------------------------------------------------------------------------------------


def test_section_takes_null_as_empty_and_refuses_anything_but_a_mapping() -> None:
    check = checker()
    assert check.section(None, "tls") == {}  # every child commented out
    assert check.section({"a": 1}, "tls") == {"a": 1}
    assert check.section("S3cr3t", "auth", "transport and credentials") is None
    assert check.section("server.crt", "tls_server_config") is None
    assert check.errors == [
        "auth: must be a mapping of transport and credentials (got a string)",  # with what: the kind only
        "tls_server_config: must be a mapping (got 'server.crt')",
    ]


def test_string_wants_a_non_empty_string() -> None:
    check = checker()
    section: dict[str, Any] = {"a": "x", "b": "", "c": 3}
    assert [check.string(section, key, "p") for key in ("a", "b", "c", "d")] == ["x", None, None, None]
    assert check.errors == [
        "p.b: must be a non-empty string (got '')",
        "p.c: must be a non-empty string (got 3)",
    ]


def test_integer_wants_a_whole_number_in_range_and_not_a_boolean() -> None:
    check = checker()
    section: dict[str, Any] = {"ok": 5986, "low": 0, "flag": True, "text": "1", "float": 1.0}
    found = [check.integer(section, key, "t", 1, 65535) for key in ("ok", "low", "flag", "text", "float", "none")]
    assert found == [5986, None, None, None, None, None]
    assert check.errors == [
        "t.low: must be an integer from 1 to 65535 (got 0)",
        "t.flag: must be an integer from 1 to 65535 (got true)",
        "t.text: must be an integer from 1 to 65535 (got '1')",
        "t.float: must be an integer from 1 to 65535 (got 1.0)",
    ]


def test_boolean_gives_the_default_when_left_out_or_wrong() -> None:
    check = checker()
    section: dict[str, Any] = {"on": True, "off": False, "yes": "yes", "none": None}
    assert check.boolean(section, "on", "p", default=False) is True
    assert check.boolean(section, "off", "p", default=True) is False
    assert check.boolean(section, "yes", "p", default=True) is True
    assert check.boolean(section, "none", "p", default=True) is True
    assert check.boolean(section, "gone", "p", default=False) is False
    assert check.errors == ["p.yes: must be true or false (got 'yes')"]


def test_choice_returns_the_choice_or_says_what_is_allowed() -> None:
    check = checker()
    section: dict[str, Any] = {"scheme": "https", "bad": "HTTPS", "odd": ["https"]}
    choices = ("https", "http")
    assert check.choice(section, "scheme", "t", choices) == "https"
    assert check.choice(section, "bad", "t", choices) is None
    assert check.choice(section, "odd", "t", choices) is None
    assert check.choice(section, "gone", "t", choices) is None
    assert check.errors == [
        "t.bad: must be one of https, http (got 'HTTPS'); did you mean 'https'?",
        "t.odd: must be one of https, http (got a list)",
    ]


def test_names_keeps_the_good_items_and_reports_each_bad_one() -> None:
    check = checker()
    allowed = {"CurveP256": "prime256v1", "X25519": "X25519"}
    section: dict[str, Any] = {"curves": ["X25519", "P256", "", 3], "one": "X25519", "any": ["a", "b"]}
    assert check.names(section, "curves", "tls", allowed) == ["X25519"]
    assert check.names(section, "one", "tls", allowed) == []
    assert check.names(section, "any", "tls", None) == ["a", "b"]
    assert check.names(section, "gone", "tls", allowed) == []
    assert check.errors == [
        "tls.curves[1]: must be one of CurveP256, X25519 (got 'P256'); did you mean 'CurveP256'?",
        "tls.curves[2]: must be a non-empty string (got '')",
        "tls.curves[3]: must be a non-empty string (got 3)",
        "tls.one: must be a list (got 'X25519')",
    ]


# --- files --------------------------------------------------------------------------------------


def test_existing_file_resolves_and_says_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("pem")
    (tmp_path / "folder").mkdir()
    check = checker(base_dir=str(tmp_path))
    section = {"ca_file": "./ca.pem", "cert_file": "folder", "key_file": "gone.pem"}
    assert check.existing_file(section, "ca_file", "tls") == str(tmp_path / "ca.pem")
    assert check.existing_file(section, "cert_file", "tls") == str(tmp_path / "folder")
    assert check.existing_file(section, "key_file", "tls") == str(tmp_path / "gone.pem")
    assert check.existing_file(section, "other", "tls") is None
    assert check.errors == [
        f"tls.cert_file: {tmp_path / 'folder'} does not exist or is not a file",
        f"tls.key_file: {tmp_path / 'gone.pem'} does not exist or is not a file",
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_existing_file_says_when_it_cannot_be_read(tmp_path: Path) -> None:
    secret = tmp_path / "key.pem"
    secret.write_text("pem")
    secret.chmod(0)
    check = checker(base_dir=str(tmp_path))
    check.existing_file({"key_file": "key.pem"}, "key_file", "tls")
    assert check.errors == [f"tls.key_file: {secret} is not readable by this process"]


def test_readable_opens_the_file_and_gives_the_reason(tmp_path: Path) -> None:
    (tmp_path / "server.crt").write_text("pem")
    check = checker(base_dir=str(tmp_path))
    assert check.readable(str(tmp_path / "server.crt"), "tls_server_config.cert_file")
    assert not check.readable(str(tmp_path / "server.key"), "tls_server_config.key_file")
    assert not check.readable(str(tmp_path), "tls_server_config.client_ca_file")
    assert check.errors == [
        f"tls_server_config.key_file: cannot read {tmp_path / 'server.key'}: No such file or directory",
        f"tls_server_config.client_ca_file: cannot read {tmp_path}: Is a directory",
    ]


# --- reading ------------------------------------------------------------------------------------


def test_read_document_gives_the_text_and_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_bytes(b"\xef\xbb\xbftargets: []\n")  # a BOM, as Notepad writes it
    assert read_document(path, "configuration file", _Error) == ("targets: []\n", str(tmp_path))


def test_read_document_raises_the_callers_error(tmp_path: Path) -> None:
    with pytest.raises(_Error) as caught:
        read_document(tmp_path / "nope.yml", "web configuration file", _Error)
    assert caught.value.errors == [
        f"{tmp_path / 'nope.yml'}: cannot read the web configuration file: No such file or directory"
    ]


def test_parse_document_gives_the_data_or_raises_the_callers_error() -> None:
    assert parse_document("a: [1, 2]\n", _Error) == {"a": [1, 2]}
    assert parse_document("", _Error) is None
    with pytest.raises(_Error) as caught:
        parse_document("a: 1\na: 2\n", _Error)
    assert caught.value.errors == ["line 2, column 1: key 'a' is given twice; each key may appear once in a mapping"]
