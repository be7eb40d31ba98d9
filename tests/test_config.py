"""The configuration loader: what a good file becomes, and what each kind of mistake says."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import (
    COLLECTORS,
    DEFAULT_COLLECTORS,
    AuthConfig,
    ConfigError,
    load_config,
    parse_config,
    parse_duration,
)

REPO = Path(__file__).resolve().parent.parent
SECRET = "S3cr3t-Pa55w0rd!"  # must never show up in an error message or a repr
ENV = {"CM_PASSWORD": SECRET}
DROP = object()  # as a change: remove the key
# Every key of the configuration (docs/configuration.md).
DESIGN_KEYS = [
    "defaults", "interval", "timeout", "per_row", "stale_after", "collectors", "targets", "name", "source",
    "host", "port", "scheme",
    "site_code", "auth", "transport", "username", "password_file", "password_env", "password",
    "message_encryption", "allow_unencrypted", "tls", "verify", "ca_file", "cert_file", "key_file", "path",
    "packages", "servers", "seed", "keytab_file", "kerberos_service", "kerberos_hostname_override",
]  # fmt: skip


def _changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, **changes}
    return {key: value for key, value in merged.items() if value is not DROP}


def winrm(auth: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A valid winrm target (ntlm, password from CM_PASSWORD) with some keys changed."""
    base_auth = {"transport": "ntlm", "username": "CORP\\svc-cm-exporter", "password_env": "CM_PASSWORD"}
    base = {"name": "abc", "source": "winrm", "host": "cm01.corp.example.com", "auth": base_auth}
    return _changed(base, {"auth": _changed(base_auth, auth or {}), **changes})


def document(*targets: dict[str, Any], defaults: dict[str, Any] | None = None) -> str:
    data: dict[str, Any] = {"targets": list(targets)}
    if defaults is not None:
        data["defaults"] = defaults
    return yaml.safe_dump(data)


def errors_of(text: str, **kwargs: Any) -> list[str]:
    kwargs.setdefault("environ", ENV)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, **kwargs)
    assert caught.value.errors, "a ConfigError must say what is wrong"
    assert str(caught.value) == "\n".join(caught.value.errors)
    return caught.value.errors


def the_error(text: str, **kwargs: Any) -> str:
    errors = errors_of(text, **kwargs)
    assert len(errors) == 1, errors
    return errors[0]


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("500ms", 0.5), ("2d", 172800),
        ("1w", 604800), ("1y", 31536000), ("1m30s500ms", 90.5), ("0s", 0), ("90m", 5400),
    ],
)  # fmt: skip
def test_parse_duration_accepts_prometheus_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"), ("300", "has no unit; write 300s"), ("0", "has no unit"), ("-5m", "negative"),
        ("5 m", "not a duration"), ("30m1h", "not a duration"), ("1.5h", "not a duration"),
        ("5M", "not a duration"), ("1h1h", "not a duration"), ("5m\n", "not a duration"),
        ("300000y", "too long"), ("9" * 5000 + "s", "too long"),
    ],
)  # fmt: skip
def test_parse_duration_refuses_what_prometheus_refuses(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_duration(text)


# --- good files ---------------------------------------------------------------------------------

DESIGN_EXAMPLE = r"""
defaults:
  interval: 5m
  timeout: 2m
  per_row: all
  stale_after: 15m
targets:
  - name: abc
    source: winrm
    host: cm01.corp.example.com
    port: 5986
    scheme: https
    site_code: ABC
    auth:
      transport: ntlm
      username: CORP\svc-cm-exporter
      password_file: secrets/cm_password
      message_encryption: auto
    tls:
      verify: true
      ca_file: corp-ca.pem
  - name: offline
    source: file
    path: /data/sms_packagestatus.csv
  - name: demo
    source: demo
    packages: 40
    servers: 12
"""


def test_design_example_loads(tmp_path: Path) -> None:
    # The example of every key, less tls.cert_file/key_file: they belong to transport certificate.
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "cm_password").write_text(SECRET + "\n")
    (tmp_path / "corp-ca.pem").write_text("not checked here\n")
    config = parse_config(DESIGN_EXAMPLE, base_dir=str(tmp_path), environ={})
    abc, offline, demo = config.targets
    assert (abc.name, abc.source, abc.host, abc.port, abc.scheme, abc.site_code) == (
        "abc", "winrm", "cm01.corp.example.com", 5986, "https", "ABC",
    )  # fmt: skip
    assert abc.auth == AuthConfig("ntlm", "CORP\\svc-cm-exporter", SECRET, "auto", False)
    assert abc.tls.verify is True
    assert abc.tls.ca_file == str(tmp_path / "corp-ca.pem")
    assert abc.endpoint == "https://cm01.corp.example.com:5986/wsman"
    assert (offline.source, offline.path) == ("file", "/data/sms_packagestatus.csv")
    assert (demo.source, demo.packages, demo.servers, demo.seed) == ("demo", 40, 12, None)
    assert config.target("offline") is offline
    assert config.target("nope") is None


def test_built_in_defaults_apply_when_left_out() -> None:
    (target,) = parse_config(document(winrm()), environ=ENV).targets
    assert (target.interval, target.timeout, target.per_row, target.stale_after) == (300, 120, "all", 900)
    assert target.collectors == DEFAULT_COLLECTORS == {
        "package_status", "package_info", "dp_info", "dp_status", "dp_drive", "dp_groups"}
    assert (target.scheme, target.port, target.site_code) == ("https", 5986, None)
    assert (target.auth.message_encryption, target.auth.allow_unencrypted, target.tls.verify) == (
        "auto", False, True,
    )  # fmt: skip


def test_defaults_block_applies_to_every_target() -> None:
    defaults = {"interval": "1m", "timeout": "30s", "per_row": "not_installed", "stale_after": "1h"}
    text = document(winrm(), {"name": "d", "source": "demo"}, defaults=defaults)
    for target in parse_config(text, environ=ENV).targets:
        assert (target.interval, target.timeout, target.per_row, target.stale_after) == (
            60, 30, "not_installed", 3600,
        )  # fmt: skip


def test_a_target_overrides_each_default() -> None:
    text = document(
        winrm(interval="10m", timeout="5m", per_row="none", stale_after="30m"),
        {"name": "d", "source": "demo"},
        defaults={"interval": "1m", "timeout": "30s", "per_row": "not_installed", "stale_after": "1h"},
    )
    own, inherited = parse_config(text, environ=ENV).targets
    assert (own.interval, own.timeout, own.per_row, own.stale_after) == (600, 300, "none", 1800)
    assert (inherited.interval, inherited.per_row) == (60, "not_installed")


def test_a_target_list_of_collectors_replaces_the_inherited_one() -> None:
    text = document(
        winrm(collectors=["package_info"]),
        {"name": "d", "source": "demo"},
        defaults={"collectors": ["package_status", "dp_content_state", "dp_info"]},
    )
    own, inherited = parse_config(text, environ=ENV).targets
    assert own.collectors == {"package_status", "package_info"}  # package_status runs, listed or not
    assert inherited.collectors == {"package_status", "dp_content_state", "dp_info"}


def test_an_empty_list_runs_package_status_alone() -> None:
    (target,) = parse_config(document(winrm(collectors=[])), environ=ENV).targets
    assert target.collectors == {"package_status"}


def test_a_file_target_runs_package_status_alone_when_the_defaults_ask_for_more() -> None:
    text = document({"name": "f", "source": "file", "path": "rows.csv"}, defaults={"collectors": COLLECTORS})
    (target,) = parse_config(text).targets
    assert target.collectors == {"package_status"}


def test_a_file_target_asking_for_other_classes_is_told_why_not() -> None:
    text = document({"name": "f", "source": "file", "path": "rows.csv", "collectors": ["package_info", "dp_info"]})
    assert the_error(text) == (
        "targets[0].collectors: the file source reads SMS_PackageStatus only: remove dp_info, package_info "
        "(only winrm and demo targets run them)"
    )


@pytest.mark.parametrize(("scheme", "port"), [("https", 5986), ("http", 5985)])
def test_port_follows_the_scheme_when_left_out(scheme: str, port: int) -> None:
    (target,) = parse_config(document(winrm(scheme=scheme)), environ=ENV).targets
    assert target.port == port
    assert target.endpoint == f"{scheme}://cm01.corp.example.com:{port}/wsman"


def test_an_explicit_port_is_kept() -> None:
    (target,) = parse_config(document(winrm(scheme="http", port=8080)), environ=ENV).targets
    assert target.port == 8080


def test_site_code_is_stored_upper_case() -> None:
    (target,) = parse_config(document(winrm(site_code="p01")), environ=ENV).targets
    assert target.site_code == "P01"


def test_site_code_is_allowed_on_every_source() -> None:
    # file: the site of rows without SiteCode; demo: the simulated site's code.
    text = document(
        {"name": "f", "source": "file", "path": "/x.csv", "site_code": "ABC"},
        {"name": "d", "source": "demo", "site_code": "dem"},
    )
    assert [t.site_code for t in parse_config(text).targets] == ["ABC", "DEM"]


@pytest.mark.parametrize("host", ["fe80::1", "[fe80::1]"])
def test_an_ipv6_host_is_stored_bare_and_bracketed_in_the_endpoint(host: str) -> None:
    (target,) = parse_config(document(winrm(host=host)), environ=ENV).targets
    assert target.host == "fe80::1"
    assert target.endpoint == "https://[fe80::1]:5986/wsman"


@pytest.mark.parametrize(
    ("content", "password"),
    [("pw\n", "pw"), ("pw\r\n", "pw"), ("pw", "pw"), ("pw\n\n", "pw\n"), (" pw \n", " pw ")],
)
def test_password_file_loses_one_line_ending_only(tmp_path: Path, content: str, password: str) -> None:
    (tmp_path / "pw").write_bytes(content.encode())
    text = document(winrm(auth={"password_env": DROP, "password_file": "pw"}))
    (target,) = parse_config(text, base_dir=str(tmp_path), environ={}).targets
    assert target.auth.password == password


def test_password_file_written_by_windows_powershell_with_a_bom_gives_the_password_without_it(tmp_path: Path) -> None:
    (tmp_path / "pw").write_bytes(b"\xef\xbb\xbfp\xc3\xa4ss\r\n")  # Set-Content -Encoding UTF8 on PS 5.1
    text = document(winrm(auth={"password_env": DROP, "password_file": "pw"}))
    (target,) = parse_config(text, base_dir=str(tmp_path), environ={}).targets
    assert target.auth.password == "päss"


def test_relative_paths_start_at_the_config_files_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "pw").write_text(SECRET)
    config_file = tmp_path / "etc" / "config.yaml"
    config_file.write_text(
        document(
            winrm(auth={"password_env": DROP, "password_file": "pw"}),
            {"name": "f", "source": "file", "path": "exports/rows.csv"},
        )
    )
    monkeypatch.chdir(tmp_path)  # elsewhere than the config file
    abc, offline = load_config(config_file).targets
    assert abc.auth.password == SECRET
    assert offline.path == str(tmp_path / "etc" / "exports" / "rows.csv")


def test_a_file_target_path_need_not_exist_yet(tmp_path: Path) -> None:
    text = document({"name": "f", "source": "file", "path": "later.csv"})
    (target,) = parse_config(text, base_dir=str(tmp_path)).targets
    assert target.path == str(tmp_path / "later.csv")
    assert not os.path.exists(target.path)


def test_password_from_the_environment() -> None:
    (target,) = parse_config(document(winrm()), environ=ENV).targets
    assert target.auth.password == SECRET


def test_password_inline() -> None:
    text = document(winrm(auth={"password_env": DROP, "password": SECRET}))
    (target,) = parse_config(text, environ={}).targets
    assert target.auth.password == SECRET


def test_kerberos_needs_neither_username_nor_password() -> None:
    text = document(winrm(auth={"transport": "kerberos", "username": DROP, "password_env": DROP}))
    (target,) = parse_config(text, environ={}).targets
    assert (target.auth.transport, target.auth.username, target.auth.password) == ("kerberos", None, None)


def test_certificate_transport_with_client_certificate(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("cert")
    (tmp_path / "c.key").write_text("key")
    auth = {"transport": "certificate", "username": DROP, "password_env": DROP}
    text = document(winrm(auth=auth, tls={"cert_file": "c.pem", "key_file": "c.key", "verify": False}))
    (target,) = parse_config(text, base_dir=str(tmp_path), environ={}).targets
    assert (target.tls.cert_file, target.tls.key_file) == (str(tmp_path / "c.pem"), str(tmp_path / "c.key"))
    assert target.tls.verify is False


def test_basic_over_http_is_allowed_when_the_user_says_so() -> None:
    auth = {"transport": "basic", "allow_unencrypted": True}
    (target,) = parse_config(document(winrm(auth=auth, scheme="http")), environ=ENV).targets
    assert (target.auth.transport, target.scheme, target.auth.allow_unencrypted) == ("basic", "http", True)


def test_demo_target_values() -> None:
    text = document({"name": "d", "source": "demo", "packages": 100000, "servers": 1, "seed": -7})
    (target,) = parse_config(text).targets
    assert (target.packages, target.servers, target.seed) == (100000, 1, -7)


def test_the_password_is_in_no_repr() -> None:
    config = parse_config(document(winrm()), environ=ENV)
    assert SECRET not in repr(config)
    assert SECRET not in str(config.targets[0].auth)


# --- config.example.yaml ------------------------------------------------------------------------


def test_the_example_loads_as_written_with_cm_password_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CM_PASSWORD", SECRET)
    config = load_config(REPO / "config.example.yaml")
    assert [(t.name, t.source) for t in config.targets] == [
        ("abc", "winrm"), ("offline", "file"), ("demo", "demo"),
    ]  # fmt: skip
    assert config.targets[0].auth.password == SECRET


def test_the_example_says_what_to_set_when_cm_password_is_missing() -> None:
    text = (REPO / "config.example.yaml").read_text()
    assert errors_of(text, base_dir=str(REPO), environ={}) == [
        "targets[0].auth.password_env: the environment variable it names is not set; the password must be in it"
    ]


def test_the_demo_example_runs_every_collector_so_every_panel_has_data() -> None:
    config = load_config(REPO / "examples" / "demo.yaml")
    assert [t.collectors for t in config.targets] == [frozenset(COLLECTORS)]


def test_the_example_documents_every_key_of_the_design() -> None:
    text = (REPO / "config.example.yaml").read_text()
    keys = [*DESIGN_KEYS, "parallel_enumerations", "max_rows", "max_response_bytes"]
    missing = [key for key in keys if f"{key}:" not in text]
    assert missing == []
    assert [name for name in COLLECTORS if f"- {name} " not in text] == []


# --- mistakes in the file itself ----------------------------------------------------------------


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert caught.value.errors == [
        f"{tmp_path / 'nope.yaml'}: cannot read the configuration file: No such file or directory"
    ]


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file: Is a directory"):
        load_config(tmp_path)


def test_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text("targets: []\n")
    config_file.chmod(0)

    def denied(*args: object, **kwargs: object) -> None:
        # chmod 0 does not stop root (CI runs as root): refuse the read as the kernel would.
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(ConfigError, match="cannot read the configuration file: Permission denied"):
        load_config(config_file)


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_bytes(b"targets:\n  - name: \xff\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 19 cannot be decoded\)"):
        load_config(config_file)


def test_a_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_bytes(b"\xef\xbb\xbf" + document({"name": "d", "source": "demo"}).encode())
    assert load_config(config_file).targets[0].name == "d"


def test_yaml_syntax_error_gives_line_and_column() -> None:
    error = the_error("targets:\n  - name: a\n    source: [demo\n")
    assert error.startswith("line 4, column 1: YAML syntax error: expected ',' or ']'")
    assert "Traceback" not in error


def test_yaml_tag_in_a_password_is_not_shown() -> None:
    text = "targets:\n  - name: a\n    auth:\n      password: !Secr3tPass\n"
    error = the_error(text)
    assert error.startswith("line 4, column 17: YAML syntax error: could not determine a constructor")
    assert "put it in quotes" in error
    assert "Secr3tPass" not in error


def test_yaml_alias_in_a_password_is_not_shown() -> None:
    error = the_error("targets:\n  - auth:\n      password: *Secr3tPass\n")
    assert "Secr3tPass" not in error
    assert "a value starting with * is read as a YAML alias: put it in quotes" in error


def test_a_key_given_twice_is_refused() -> None:
    error = the_error("targets:\n  - name: a\n    name: b\n")
    assert error == "line 3, column 5: key 'name' is given twice; each key may appear once in a mapping"


def test_an_unreadable_yaml_value_is_located() -> None:
    assert the_error("targets:\n  - seed: 2024-13-45\n").startswith(
        "line 2, column 11: YAML syntax error: this looks like a YAML timestamp but is not a valid one; quote it"
    )


def test_empty_file() -> None:
    assert the_error("# nothing yet\n") == (
        "top level: the configuration is empty; it needs at least a `targets:` list"
    )


def test_top_level_must_be_a_mapping() -> None:
    assert the_error("- name: a\n") == "top level: must be a mapping with keys defaults and targets (got a list)"


def test_targets_are_required() -> None:
    assert the_error("defaults: {}\n") == (
        "targets: required: a list of the SMS Providers (or files, or demo sites) to poll"
    )


def test_targets_must_be_a_list() -> None:
    assert the_error("targets: {name: a}\n") == "targets: must be a list of targets (got a mapping)"


def test_targets_must_not_be_empty() -> None:
    assert the_error("targets: []\n") == "targets: at least one target is required (got an empty list)"


def test_a_target_must_be_a_mapping() -> None:
    assert the_error("targets: [abc]\n") == ("targets[0]: must be a mapping with at least name and source (got 'abc')")


def test_unknown_top_level_key() -> None:
    assert the_error(document(winrm()) + "tragets: []\n") == (
        "tragets: unknown key; allowed: defaults, targets; did you mean 'targets'?"
    )


def test_a_defaults_key_at_the_top_level_is_pointed_to_defaults() -> None:
    assert the_error(document(winrm()) + "interval: 1m\n") == (
        "interval: not a top-level key; put it under defaults: or on a target"
    )


def test_a_non_string_key_is_refused() -> None:
    assert the_error(document(winrm()) + "1: x\n") == "top level: key 1 is not a string; allowed: defaults, targets"


# --- mistakes in a target -----------------------------------------------------------------------


def test_unknown_key_with_suggestion() -> None:
    text = document(winrm(auth={"passwrd": "x"}))
    assert the_error(text) == (
        "targets[0].auth.passwrd: unknown key; allowed: transport, username, password_file, "
        "password_env, password, message_encryption, allow_unencrypted, keytab_file, kerberos_service, "
        "kerberos_hostname_override; did you mean 'password'?"
    )


def test_unknown_key_without_a_close_match() -> None:
    error = the_error(document({"name": "d", "source": "demo", "zzz": 1}))
    assert error == (
        "targets[0].zzz: unknown key; allowed: name, source, site_code, interval, timeout, per_row, stale_after, "
        "collectors, max_rows, packages, servers, seed"
    )


def test_a_key_of_another_source_is_named_with_its_source() -> None:
    text = document({"name": "f", "source": "file", "path": "x.csv", "host": "cm01"})
    assert the_error(text) == "targets[0].host: belongs to source winrm, not to this target's source file"


def test_source_is_required() -> None:
    assert the_error(document({"name": "x"})) == "targets[0].source: required: one of winrm, file, demo"


def test_source_must_be_known() -> None:
    assert the_error(document({"name": "x", "source": "wmi"})) == (
        "targets[0].source: must be one of winrm, file, demo (got 'wmi')"
    )


def test_with_an_unknown_source_only_strange_keys_are_reported() -> None:
    errors = errors_of(document({"name": "x", "source": "winrn", "host": "h", "hots": "h"}))
    assert errors == [
        "targets[0].source: must be one of winrm, file, demo (got 'winrn'); did you mean 'winrm'?",
        "targets[0].hots: unknown key; allowed: name, source, site_code, interval, timeout, per_row, stale_after, "
        "collectors, max_rows, host, port, scheme, auth, tls, parallel_enumerations, max_response_bytes, path, "
        "packages, servers, seed; "
        "did you mean 'host'?",
    ]


def test_name_is_required() -> None:
    assert the_error(document({"source": "demo"})) == (
        "targets[0].name: required: a unique name, used as the target label and in /probe?target="
    )


@pytest.mark.parametrize("name", ["a b", "a/b", "x" * 65, "", "naïve", 12])
def test_name_must_fit_a_label_and_a_url(name: object) -> None:
    error = the_error(document({"name": name, "source": "demo"}))
    assert error.startswith("targets[0].name: must be 1 to 64 letters, digits, '_', '-' or '.'")


def test_duplicate_target_names() -> None:
    demo = {"name": "abc", "source": "demo"}
    text = document(demo, {"name": "other", "source": "demo"}, demo)
    assert the_error(text) == "targets[2].name: duplicate target name 'abc' (also targets[0])"


@pytest.mark.parametrize(("port", "shown"), [("abc", "'abc'"), (0, "0"), (65536, "65536"), (True, "true")])
def test_port_must_be_an_integer_in_range(port: object, shown: str) -> None:
    assert the_error(document(winrm(port=port))) == (
        f"targets[0].port: must be an integer from 1 to 65535 (got {shown})"
    )


def test_scheme_must_be_known() -> None:
    assert the_error(document(winrm(scheme="HTTPS"))) == (
        "targets[0].scheme: must be one of https, http (got 'HTTPS'); did you mean 'https'?"
    )


def test_host_is_required_for_winrm() -> None:
    assert the_error(document(winrm(host=DROP))) == (
        "targets[0].host: required for source winrm: the SMS Provider's host name or IP address"
    )


@pytest.mark.parametrize("host", ["https://cm01/wsman", "cm01/wsman", "cm 01"])
def test_host_must_not_carry_a_scheme_or_path(host: str) -> None:
    assert the_error(document(winrm(host=host))) == (
        f"targets[0].host: must be a host name or IP address only; set scheme and port apart (got {host!r})"
    )


def test_host_must_not_carry_a_port() -> None:
    assert the_error(document(winrm(host="cm01:5986"))) == (
        "targets[0].host: must be a host name or IP address only; put the port in port (got 'cm01:5986')"
    )


@pytest.mark.parametrize(("code", "shown"), [("AB", "'AB'"), ("AB-", "'AB-'"), ("ABCD", "'ABCD'")])
def test_site_code_is_three_letters_or_digits(code: str, shown: str) -> None:
    assert the_error(document(winrm(site_code=code))) == (
        f"targets[0].site_code: must be 3 letters or digits, such as ABC or P01 (got {shown})"
    )


def test_a_numeric_site_code_must_be_quoted() -> None:
    # YAML reads 001 as the integer 1: the zeros are gone before the loader sees it.
    error = the_error(document(winrm()).replace("host:", "site_code: 001\n  host:"))
    assert error == (
        "targets[0].site_code: must be 3 letters or digits, such as ABC or P01 (got 1); "
        "quote it so YAML keeps it as written"
    )


def test_auth_is_required_for_winrm() -> None:
    assert the_error(document(_changed(winrm(), {"auth": DROP}))) == (
        "targets[0].auth: required for source winrm: a mapping with transport (ntlm, kerberos, credssp, "
        "basic, certificate) and the credentials it needs"
    )


def test_transport_is_required() -> None:
    assert the_error(document(winrm(auth={"transport": DROP}))) == (
        "targets[0].auth.transport: required: one of ntlm, kerberos, credssp, basic, certificate"
    )


def test_transport_must_be_known() -> None:
    assert the_error(document(winrm(auth={"transport": "ntml"}))) == (
        "targets[0].auth.transport: must be one of ntlm, kerberos, credssp, basic, certificate "
        "(got 'ntml'); did you mean 'ntlm'?"
    )


@pytest.mark.parametrize("transport", ["ntlm", "credssp", "basic"])
def test_username_is_required_for_password_transports(transport: str) -> None:
    error = the_error(document(winrm(auth={"transport": transport, "username": DROP})))
    assert error == (f"targets[0].auth.username: required for transport {transport}, such as CORP\\svc-cm-exporter")


@pytest.mark.parametrize("transport", ["ntlm", "credssp", "basic"])
def test_password_is_required_for_password_transports(transport: str) -> None:
    error = the_error(document(winrm(auth={"transport": transport, "password_env": DROP})))
    assert error == (
        f"targets[0].auth: transport {transport} needs a password: set password_file, password_env or password"
    )


def test_only_one_password_source() -> None:
    error = the_error(document(winrm(auth={"password": SECRET})))
    assert (
        error
        == "targets[0].auth: set only one of password_file, password_env, password (got password_env and password)"
    )


def test_password_env_must_be_set() -> None:
    assert the_error(document(winrm()), environ={}) == (
        "targets[0].auth.password_env: the environment variable it names is not set; the password must be in it"
    )


def test_password_env_must_not_be_empty() -> None:
    assert the_error(document(winrm()), environ={"CM_PASSWORD": ""}) == (
        "targets[0].auth.password_env: the environment variable it names is empty; the password must be in it"
    )


def test_password_file_must_exist(tmp_path: Path) -> None:
    text = document(winrm(auth={"password_env": DROP, "password_file": "missing"}))
    assert the_error(text, base_dir=str(tmp_path)) == (
        "targets[0].auth.password_file: the file it names does not exist or is not a file "
        f"(relative paths start at {tmp_path})"
    )


def test_password_file_must_not_be_empty(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n")
    text = document(winrm(auth={"password_env": DROP, "password_file": "pw"}))
    assert the_error(text, base_dir=str(tmp_path)) == (
        "targets[0].auth.password_file: the file it names is empty; it must hold the password"
    )


def test_password_file_must_be_small(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 70000)
    text = document(winrm(auth={"password_env": DROP, "password_file": "big"}))
    assert the_error(text, base_dir=str(tmp_path)) == (
        "targets[0].auth.password_file: the file it names is larger than 64 KiB; it should hold only the password"
    )


@pytest.mark.parametrize("key", ["password", "password_env", "password_file"])
def test_a_mistyped_password_key_says_the_type_not_the_value(key: str) -> None:
    error = the_error(document(winrm(auth={"password_env": DROP, key: 987654321})))
    assert error.startswith(f"targets[0].auth.{key}: must be ")
    assert "(got an integer)" in error
    assert "987654321" not in error


@pytest.mark.parametrize("key", ["password_env", "password_file"])
def test_a_password_pasted_under_the_wrong_key_is_not_shown(key: str, tmp_path: Path) -> None:
    text = document(winrm(auth={"password_env": DROP, key: SECRET}))
    error = the_error(text, base_dir=str(tmp_path), environ={})
    assert error.startswith(f"targets[0].auth.{key}: ")
    assert SECRET not in error


def test_basic_over_http_is_refused() -> None:
    error = the_error(document(winrm(auth={"transport": "basic"}, scheme="http")))
    assert error == (
        "targets[0].auth.transport: basic over scheme http is refused: the password would cross the network "
        "in clear (basic has no message encryption); use scheme https, or set auth.allow_unencrypted: true "
        "to accept that"
    )


@pytest.mark.parametrize("transport", ["basic", "certificate"])
def test_message_encryption_always_needs_a_transport_that_encrypts(transport: str, tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("c")
    target = winrm(auth={"transport": transport, "message_encryption": "always"})
    if transport == "certificate":
        target = winrm(
            auth={"transport": transport, "message_encryption": "always", "username": DROP, "password_env": DROP},
            tls={"cert_file": "c.pem", "key_file": "c.pem"},
        )
    text = document(target)
    assert the_error(text, base_dir=str(tmp_path)) == (
        f"targets[0].auth.message_encryption: always is only possible with ntlm, kerberos or credssp; "
        f"{transport} has no message encryption (use scheme https, and auto or never)"
    )


def test_message_encryption_must_be_known() -> None:
    assert the_error(document(winrm(auth={"message_encryption": "on"}))) == (
        "targets[0].auth.message_encryption: must be one of auto, always, never (got 'on')"
    )


def test_allow_unencrypted_must_be_a_boolean() -> None:
    assert the_error(document(winrm(auth={"allow_unencrypted": "yes please"}))) == (
        "targets[0].auth.allow_unencrypted: must be true or false (got 'yes please')"
    )


def test_certificate_needs_https_and_both_files() -> None:
    auth = {"transport": "certificate", "username": DROP, "password_env": DROP}
    assert errors_of(document(winrm(auth=auth, scheme="http"))) == [
        "targets[0].auth.transport: certificate needs scheme https (the certificate is a TLS one)",
        "targets[0].tls.cert_file: required for auth.transport certificate (PEM file)",
        "targets[0].tls.key_file: required for auth.transport certificate (PEM file)",
    ]


def test_certificate_takes_no_username_or_password() -> None:
    auth = {"transport": "certificate"}
    errors = errors_of(document(winrm(auth=auth)))
    assert errors[:2] == [
        "targets[0].auth.username: not used with transport certificate (the server maps the client "
        "certificate to a user)",
        "targets[0].auth.password_env: not used with transport certificate (it signs in with tls.cert_file)",
    ]


def test_client_certificate_files_must_exist(tmp_path: Path) -> None:
    auth = {"transport": "certificate", "username": DROP, "password_env": DROP}
    text = document(winrm(auth=auth, tls={"cert_file": "c.pem", "key_file": "c.key"}))
    assert errors_of(text, base_dir=str(tmp_path)) == [
        f"targets[0].tls.cert_file: {tmp_path / 'c.pem'} does not exist or is not a file",
        f"targets[0].tls.key_file: {tmp_path / 'c.key'} does not exist or is not a file",
    ]


def test_client_certificate_only_with_transport_certificate(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("c")
    text = document(winrm(tls={"cert_file": "c.pem"}))
    assert the_error(text, base_dir=str(tmp_path)) == (
        "targets[0].tls.cert_file: only used with auth.transport certificate (this target uses ntlm)"
    )


def test_ca_file_must_exist(tmp_path: Path) -> None:
    text = document(winrm(tls={"ca_file": "ca.pem"}))
    assert the_error(text, base_dir=str(tmp_path)) == (
        f"targets[0].tls.ca_file: {tmp_path / 'ca.pem'} does not exist or is not a file"
    )


def test_tls_is_refused_with_http() -> None:
    assert the_error(document(winrm(scheme="http", tls={"verify": False}))) == (
        "targets[0].tls: only used with scheme https (this target uses http)"
    )


def test_tls_verify_must_be_a_boolean() -> None:
    assert the_error(document(winrm(tls={"verify": "no"}))) == "targets[0].tls.verify: must be true or false (got 'no')"


def test_path_is_required_for_file() -> None:
    assert the_error(document({"name": "f", "source": "file"})) == (
        "targets[0].path: required for source file: the exported CSV or JSON file"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("packages", 0, "must be an integer from 1 to 100000 (got 0)"),
        ("packages", 100001, "must be an integer from 1 to 100000 (got 100001)"),
        ("servers", 10001, "must be an integer from 1 to 10000 (got 10001)"),
        ("servers", "12", "must be an integer from 1 to 10000 (got '12')"),
        ("seed", 1.5, "must be an integer (got 1.5)"),
        ("seed", False, "must be an integer (got false)"),
    ],
)
def test_demo_values(key: str, value: object, message: str) -> None:
    assert the_error(document({"name": "d", "source": "demo", key: value})) == f"targets[0].{key}: {message}"


# --- timing and collectors ----------------------------------------------------------------------


def test_a_bare_number_is_not_a_duration() -> None:
    assert the_error(document(winrm(interval=300))) == (
        "targets[0].interval: 300 has no unit; write 300s for seconds (a duration such as 30s, 5m or 1h30m)"
    )


def test_a_duration_must_be_well_formed() -> None:
    assert the_error(document(winrm(timeout="2 min"))) == (
        "targets[0].timeout: '2 min' is not a duration; use whole numbers with units y, w, d, h, m, s, ms, "
        "largest first, such as 30s, 5m or 1h30m"
    )


def test_timeout_longer_than_interval_is_refused() -> None:
    assert the_error(document(winrm(timeout="10m"))) == (
        "targets[0].timeout: timeout 10m (targets[0].timeout) is longer than interval 5m (the default); "
        "a poll must end before the next one is due: set timeout to at most the interval"
    )


def test_interval_shorter_than_the_inherited_timeout_is_reported_at_the_interval() -> None:
    assert the_error(document(winrm(interval="1m"))) == (
        "targets[0].interval: timeout 2m (the default) is longer than interval 1m (targets[0].interval); "
        "a poll must end before the next one is due: set timeout to at most the interval"
    )


def test_stale_after_shorter_than_interval_is_refused() -> None:
    text = document(winrm(), defaults={"stale_after": "1m"})
    assert the_error(text) == (
        "defaults.stale_after: stale_after 1m (defaults.stale_after) is shorter than interval 5m "
        "(the default); the rows would vanish between two good polls: set stale_after to at least the interval"
    )


def test_a_bad_defaults_block_is_reported_once_not_per_target() -> None:
    demo = {"source": "demo"}
    text = document(demo | {"name": "a"}, demo | {"name": "b"}, defaults={"timeout": "10m"})
    assert errors_of(text) == [
        "defaults.timeout: timeout 10m (defaults.timeout) is longer than interval 5m (the default); "
        "a poll must end before the next one is due: set timeout to at most the interval"
    ]


def test_interval_must_be_more_than_zero() -> None:
    errors = errors_of(document(winrm(interval="0s", timeout="0s", stale_after="0s")))
    assert "targets[0].interval: must be longer than 0s" in errors
    assert "targets[0].timeout: must be longer than 0s" in errors


def test_per_row_must_be_known() -> None:
    assert the_error(document(winrm(per_row="not-installed"))) == (
        "targets[0].per_row: must be one of all, not_installed, none (got 'not-installed'); "
        "did you mean 'not_installed'?"
    )


def test_defaults_must_be_a_mapping() -> None:
    assert the_error(document(winrm(), defaults=["5m"])) == (  # type: ignore[arg-type]
        "defaults: must be a mapping of settings every target inherits (got a list)"
    )


def test_defaults_take_only_inheritable_keys() -> None:
    assert the_error(document(winrm(), defaults={"host": "cm01"})) == (
        "defaults.host: unknown key; allowed: interval, timeout, per_row, stale_after, collectors, "
        "parallel_enumerations, max_rows, max_response_bytes"
    )


def test_parallel_enumerations_default_defaults_block_and_target() -> None:
    (target,) = parse_config(document(winrm()), environ=ENV).targets
    assert target.parallel_enumerations == 4
    text = document(winrm(), winrm(name="two", parallel_enumerations=1), defaults={"parallel_enumerations": 8})
    assert [t.parallel_enumerations for t in parse_config(text, environ=ENV).targets] == [8, 1]


@pytest.mark.parametrize("value", [0, 17, "4", True, 2.5])
def test_parallel_enumerations_is_an_integer_from_1_to_16(value: object) -> None:
    assert the_error(document(winrm(parallel_enumerations=value))) == (
        f"targets[0].parallel_enumerations: must be an integer from 1 to 16 (got {value!r})".replace("True", "true")
    )


def test_parallel_enumerations_belongs_to_winrm_targets_only() -> None:
    text = document({"name": "d", "source": "demo", "parallel_enumerations": 2})
    assert the_error(text) == (
        "targets[0].parallel_enumerations: belongs to source winrm, not to this target's source demo"
    )
    # under defaults: it is fine, and file and demo targets simply do not use it
    (target,) = parse_config(document({"name": "d", "source": "demo"}, defaults={"parallel_enumerations": 2})).targets
    assert target.source == "demo"


def test_unknown_collector() -> None:
    assert the_error(document(winrm(collectors=["package_info", "dp_infos"]))) == (
        "targets[0].collectors[1]: unknown collector 'dp_infos'; allowed: package_status, package_info, "
        "dp_content_state, dp_info, dp_status, dp_drive, dp_groups; did you mean 'dp_info'?"
    )


def test_collectors_are_a_list_not_a_mapping() -> None:
    assert the_error(document(winrm(), defaults={"collectors": {"dp_info": True}})) == (
        "defaults.collectors: must be a list of collector names such as [package_info, dp_info] (got a mapping); "
        "allowed: package_status, package_info, dp_content_state, dp_info, dp_status, dp_drive, dp_groups"
    )


# --- every problem at once, and no secret anywhere ----------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    text = document(
        winrm(port="abc", auth={"transport": "ntml", "passwrd": SECRET}),
        {"name": "abc", "source": "file"},
        {"name": "d", "source": "demo", "packages": -1},
    )
    errors = errors_of(text)
    assert [error.split(":")[0] for error in errors] == [
        "targets[0].port",
        "targets[0].auth.passwrd",
        "targets[0].auth.transport",
        "targets[1].path",
        "targets[2].packages",
        "targets[1].name",
    ]
    assert all(SECRET not in error for error in errors)


# --- properties ---------------------------------------------------------------------------------

KNOWN_KEYS = [*DESIGN_KEYS, *COLLECTORS, "winrm", "file", "demo", "ntlm", "basic", "certificate", "http", "https"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from([*KNOWN_KEYS, "5m", "2m", "0s", "1h30m", "CM_PASSWORD", "/dev/null", "."]),
)  # fmt: skip
yaml_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8)), children, max_size=6),
    ),
    max_leaves=40,
)


def _parses_or_config_error(text: str) -> None:
    try:
        parse_config(text, base_dir="/nonexistent-base", environ=ENV)
    except ConfigError as exc:
        assert exc.errors
        assert all(isinstance(error, str) and error for error in exc.errors)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    _parses_or_config_error(text)


@settings(max_examples=300, deadline=None)
@given(yaml_values)
def test_any_yaml_gives_a_config_or_a_config_error(value: object) -> None:
    _parses_or_config_error(yaml.safe_dump(value))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(KNOWN_KEYS), yaml_values, max_size=8), max_size=3))
def test_any_list_of_targets_gives_a_config_or_a_config_error(targets: list[dict[str, Any]]) -> None:
    _parses_or_config_error(yaml.safe_dump({"targets": targets}))


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from(KNOWN_KEYS), scalars, max_size=8),
    st.lists(st.sampled_from(["password", "password_env", "password_file"]), min_size=1, unique=True),
)
def test_a_password_never_shows_in_errors(auth: dict[str, Any], keys: list[str]) -> None:
    # The secret goes under one or more password keys of an otherwise arbitrary, broken target.
    target = winrm(auth={**auth, **dict.fromkeys(keys, SECRET)})
    try:
        parse_config(yaml.safe_dump({"targets": [target, target]}), environ={})
    except ConfigError as exc:
        assert SECRET not in str(exc)


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda path: path.name)
def test_the_shipped_examples_load(example: Path) -> None:
    assert load_config(example).targets


def test_limits_have_defaults_and_are_set_in_defaults_or_on_a_target() -> None:
    (target,) = parse_config(document(winrm()), environ=ENV).targets
    assert (target.max_rows, target.max_response_bytes) == (5_000_000, 16 * 1024 * 1024)
    text = document(winrm(), winrm(name="two", max_rows=10, max_response_bytes=65536),
                    defaults={"max_rows": 1000, "max_response_bytes": 1048576})
    assert [(t.max_rows, t.max_response_bytes) for t in parse_config(text, environ=ENV).targets] == [
        (1000, 1048576), (10, 65536)]


@pytest.mark.parametrize(("key", "value", "says"), [
    ("max_rows", 0, "from 1 to 1000000000"),
    ("max_rows", "5M", "from 1 to 1000000000"),
    ("max_response_bytes", 1000, "from 65536 to 1073741824"),
])
def test_limits_are_checked(key: str, value: object, says: str) -> None:
    changes: dict[str, Any] = {key: value}
    assert the_error(document(winrm(**changes))) == (
        f"targets[0].{key}: must be an integer {says} (got {value!r})")


def test_max_response_bytes_belongs_to_winrm_targets_only() -> None:
    text = document({"name": "d", "source": "demo", "max_response_bytes": 65536})
    assert "belongs to source winrm" in the_error(text)


# --- kerberos -----------------------------------------------------------------------------------


def _kerberos(**auth: Any) -> dict[str, Any]:
    return winrm(auth={"transport": "kerberos", "username": DROP, "password_env": DROP, **auth})


def test_kerberos_takes_a_keytab_a_service_class_and_a_host_for_the_spn(tmp_path: Path) -> None:
    keytab = tmp_path / "svc.keytab"
    keytab.write_bytes(b"\x05\x02")
    text = document(_kerberos(keytab_file=str(keytab), kerberos_service="WSMAN",
                              kerberos_hostname_override="cm01-real.corp.example.com"), )
    target = parse_config(text, environ=ENV).targets[0]
    assert target.auth.keytab_file == str(keytab)
    assert target.spn == "WSMAN/cm01-real.corp.example.com"


def test_kerberos_defaults_to_the_http_spn_of_the_host() -> None:
    target = parse_config(document(_kerberos()), environ=ENV).targets[0]
    assert (target.auth.keytab_file, target.auth.kerberos_service, target.spn) == (
        None, "HTTP", "HTTP/cm01.corp.example.com")


def test_kerberos_wants_a_principal_not_a_domain_name() -> None:
    assert the_error(document(_kerberos(username="CORP\\svc", password_env="CM_PASSWORD"))) == (
        "targets[0].auth.username: kerberos takes the principal name, such as "
        "svc-cm-exporter@CORP.EXAMPLE.COM (DOMAIN\\user is the NTLM form)")


def test_a_keytab_and_a_password_are_two_ways_and_one_is_refused(tmp_path: Path) -> None:
    keytab = tmp_path / "svc.keytab"
    keytab.write_bytes(b"\x05\x02")
    text = document(_kerberos(username="svc@CORP.EXAMPLE.COM", password_env="CM_PASSWORD", keytab_file=str(keytab)))
    assert the_error(text) == (
        "targets[0].auth.keytab_file: set either keytab_file or password_env, not both (each is a way to get tickets)")


@pytest.mark.parametrize("key,value", [("keytab_file", "/etc/hostname"), ("kerberos_service", "HTTP"),
                                       ("kerberos_hostname_override", "cm01")])
def test_the_kerberos_keys_are_refused_with_another_transport(key: str, value: str) -> None:
    assert the_error(document(winrm(auth={key: value}))) == (
        f"targets[0].auth.{key}: only used with auth.transport kerberos (this target uses ntlm)")


def test_a_wrong_service_class_or_spn_host_names_what_is_allowed(tmp_path: Path) -> None:
    errors = errors_of(document(_kerberos(kerberos_service="http", kerberos_hostname_override="cm01/x")))
    assert errors == [
        "targets[0].auth.kerberos_hostname_override: must be a host name, such as cm01.corp.example.com (got 'cm01/x')",
        "targets[0].auth.kerberos_service: must be one of HTTP, WSMAN (got 'http'); did you mean 'HTTP'?",
    ]


def test_a_missing_keytab_is_named(tmp_path: Path) -> None:
    assert the_error(document(_kerberos(keytab_file=str(tmp_path / "nope.keytab")))) == (
        f"targets[0].auth.keytab_file: {tmp_path / 'nope.keytab'} does not exist or is not a file")
