"""The kit both configuration files are validated with: read, parse, check, report by key path.

`exporter/config.py` (`--config.file`) and `exporter/webconfig.py` (`--web.config.file`) are written
by hand and may hold secrets, so both report every mistake at once, each as `<key path>: <what is
wrong>`, never quote more of a value than a short scalar, and suggest the name that was probably
meant. This module is that machinery, once: key paths, "did you mean" suggestions, how values
appear in messages, the error list with its typed getters, and reading the file.

The two files' messages differ in a few details (see `Style`); the differences are kept, as
options, so that no message either file gives changes.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from exporter.yamlfile import YAMLFileError, load_yaml, read_text

_T = TypeVar("_T", bound=str)

# The YAML kinds of value a message may name instead of showing the value. bool before int: in
# Python a bool is an int.
_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "true/false"), (int, "an integer"), (float, "a number"), (str, "a string"),
    (list, "a list"), (dict, "a mapping"), (date, "a date"), (bytes, "binary data"), (set, "a set"),
)  # fmt: skip
_SHOWN_LENGTH = 60  # a longer scalar is cut, so that a pasted certificate does not fill the log


class ValidationError(Exception):
    """A configuration file is wrong; `errors` holds every problem found, each naming its key path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# --- reading ------------------------------------------------------------------------------------


def read_document(path: str | os.PathLike[str], what: str, error: type[ValidationError]) -> tuple[str, str]:
    """The text of the file `what` names (e.g. "configuration file") and the folder it is in.

    Relative names in the file are taken from that folder. `error` (the caller's ValidationError)
    is raised with the one message when the file cannot be read.
    """
    try:
        text = read_text(path, what)
    except YAMLFileError as exc:
        raise error([str(exc)]) from None
    return text, os.path.dirname(os.path.abspath(path))


def parse_document(text: str, error: type[ValidationError]) -> Any:
    """The YAML document in `text` (exporter/yamlfile.py: strict, safe); `error` when it is not one."""
    try:
        return load_yaml(text)
    except YAMLFileError as exc:
        raise error([str(exc)]) from None


# --- key paths and suggestions ------------------------------------------------------------------


def key_path(prefix: str, key: object) -> str:
    """The path of `key` in the mapping at `prefix` (`auth.transport`); "" is the top level."""
    return f"{prefix}.{key}" if prefix else str(key)


def item_path(path: str, index: int) -> str:
    """The path of item `index` of the list at `path` (`targets[0]`)."""
    return f"{path}[{index}]"


def missing(section: Mapping[Any, Any], key: str) -> bool:
    """Whether `key` is left out; `key:` with nothing after it counts as left out, as YAML reads it."""
    return section.get(key) is None


def suggest(word: object, choices: tuple[str, ...], *, case_only: bool = False) -> str:
    """The hint "; did you mean 'x'?" for the choice closest to `word`, or "" when none is close.

    Case is ignored, so that HTTPS suggests https. With `case_only` only a choice that differs in
    case alone is suggested: for names where a close spelling is another thing (Content-Type is
    not a typo of X-Content-Type-Options).
    """
    if not isinstance(word, str):
        return ""
    by_lower = {choice.lower(): choice for choice in choices}
    if case_only:
        found = by_lower.get(word.lower())
    else:
        close = difflib.get_close_matches(word.lower(), by_lower, n=1)
        found = by_lower[close[0]] if close else None
    return f"; did you mean {found!r}?" if found else ""


# --- how values appear in messages --------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """How messages show what they found: short scalars as written, anything else by its kind.

    The defaults are the configuration file's. The web configuration file has always differed in
    three details, each an option here so that none of its messages changes:
    `clip_quoted` False cuts a long string's text and then quotes it (`'xx...'`, 62 characters)
    and shows every number in full, where True cuts the quoted text to 60 characters;
    `kind_names` False names anything but null, a list and a mapping by its Python type (`date`,
    `bytes`), where True says "a date", "binary data";
    `string_keys` False reports a key that is not a string as an unknown key at `prefix.<key>`,
    where True says at the mapping that the key is not a string.
    """

    clip_quoted: bool = True
    kind_names: bool = True
    string_keys: bool = True

    def show(self, value: object) -> str:
        """A value as a message shows it: short scalars as written (cut when long), others by kind."""
        if isinstance(value, bool):
            return "true" if value else "false"  # as YAML writes it, not True/False
        if not isinstance(value, int | float | str):
            return self.kind(value)
        if not self.clip_quoted:
            if isinstance(value, str) and len(value) > _SHOWN_LENGTH:
                value = value[: _SHOWN_LENGTH - 3] + "..."
            return repr(value)
        shown = repr(value)
        if len(shown) <= _SHOWN_LENGTH:
            return shown
        return shown[: _SHOWN_LENGTH - 4] + ("...'" if isinstance(value, str) else "...")

    def kind(self, value: object) -> str:
        """The YAML kind of a value ("a string", "a list"), for messages that must not show the value."""
        if value is None:
            return "null"
        if not self.kind_names and not isinstance(value, list | dict):
            return type(value).__name__
        return next((name for kind, name in _KINDS if isinstance(value, kind)), type(value).__name__)


# --- one validation pass ------------------------------------------------------------------------


@dataclass(frozen=True)
class Checker:
    """One validation pass: where errors go, where relative names start, how values are shown.

    Each getter returns the value when it is good and None (or the default) otherwise, having
    recorded why; the caller goes on, so that one pass finds every mistake. A key left out (or
    left empty) is not a mistake to a getter: the caller says when a key is required.
    """

    base_dir: str
    errors: list[str] = field(default_factory=list)
    style: Style = Style()

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def resolve(self, path: str) -> str:
        """`path` taken from the file's folder when relative, normalized."""
        return os.path.normpath(os.path.join(self.base_dir, path))

    def show(self, value: object) -> str:
        return self.style.show(value)

    def kind(self, value: object) -> str:
        return self.style.kind(value)

    def keys(
        self,
        section: Mapping[Any, Any],
        prefix: str,
        allowed: tuple[str, ...],
        *,
        misplaced: Mapping[str, str] | None = None,
        refused: Mapping[str, str] | None = None,
    ) -> None:
        """Report every key of `section` not in `allowed`, in the order of the file.

        `misplaced` and `refused` explain keys that are known but wrong here. A misspelt key is
        matched against `allowed` and `misplaced` (keys that work somewhere else), not against
        `refused` (keys that work nowhere), which would only lead to a second error.
        """
        explained = {**(refused or {}), **(misplaced or {})}
        for key in section:
            if key in allowed:
                continue
            if key in explained:
                self.error(key_path(prefix, key), explained[key])
            elif isinstance(key, str) or not self.style.string_keys:
                hint = suggest(key, allowed + tuple(misplaced or {}))
                self.error(key_path(prefix, key), f"unknown key; allowed: {', '.join(allowed)}{hint}")
            else:
                message = f"key {self.show(key)} is not a string; allowed: {', '.join(allowed)}"
                self.error(prefix or "top level", message)

    def section(self, value: Any, path: str, what: str | None = None) -> dict[Any, Any] | None:
        """An optional mapping: null counts as empty (a key whose children are all commented out).

        With `what` (what the mapping holds) the message names only the kind of value found: a
        section is where a secret lands when indented one level too little (`auth: <password>`).
        """
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        if what is None:
            self.error(path, f"must be a mapping (got {self.show(value)})")
        else:
            self.error(path, f"must be a mapping of {what} (got {self.kind(value)})")
        return None

    def string(self, section: Mapping[Any, Any], key: str, prefix: str) -> str | None:
        value = section.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or value == "":
            self.error(key_path(prefix, key), f"must be a non-empty string (got {self.show(value)})")
            return None
        return value

    def integer(self, section: Mapping[Any, Any], key: str, prefix: str, low: int, high: int) -> int | None:
        value = section.get(key)
        if value is None:
            return None
        # bool is an int in Python; `port: true` is a mistake, not port 1.
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.error(key_path(prefix, key), f"must be an integer from {low} to {high} (got {self.show(value)})")
            return None
        return value

    def boolean(self, section: Mapping[Any, Any], key: str, prefix: str, default: bool) -> bool:
        """true or false; `default` when left out, and when wrong (the error is recorded)."""
        value = section.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(key_path(prefix, key), f"must be true or false (got {self.show(value)})")
            return default
        return value

    def choice(self, section: Mapping[Any, Any], key: str, prefix: str, choices: tuple[_T, ...]) -> _T | None:
        value = section.get(key)
        if value is None:
            return None
        found = next((choice for choice in choices if choice == value), None)
        if found is None:
            self.error(
                key_path(prefix, key),
                f"must be one of {', '.join(choices)} (got {self.show(value)}){suggest(value, choices)}",
            )
        return found

    def names(self, section: Mapping[Any, Any], key: str, prefix: str, allowed: Mapping[str, Any] | None) -> list[str]:
        """A list of non-empty strings; with `allowed`, each must be one of its keys. Bad items are left out."""
        value = section.get(key)
        path = key_path(prefix, key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"must be a list (got {self.show(value)})")
            return []
        good = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or item == "":
                self.error(item_path(path, index), f"must be a non-empty string (got {self.show(item)})")
            elif allowed is not None and item not in allowed:
                choices = tuple(allowed)
                self.error(
                    item_path(path, index),
                    f"must be one of {', '.join(choices)} (got {self.show(item)}){suggest(item, choices)}",
                )
            else:
                good.append(item)
        return good

    def existing_file(self, section: Mapping[Any, Any], key: str, prefix: str) -> str | None:
        """A file that must be readable now (a certificate, a CA bundle), resolved; returned even when
        it is not, with the error recorded. Checked without opening it, so that a FIFO cannot block the load.
        """
        given = self.string(section, key, prefix)
        if given is None:
            return None
        path = self.resolve(given)
        if not os.path.isfile(path):
            self.error(key_path(prefix, key), f"{path} does not exist or is not a file")
        elif not os.access(path, os.R_OK):
            self.error(key_path(prefix, key), f"{path} is not readable by this process")
        return path

    def readable(self, path: str, where: str) -> bool:
        """Whether the file at `path` (already resolved) opens for reading; else the error at `where`."""
        try:
            with open(path, "rb"):
                return True
        except OSError as exc:
            self.error(where, f"cannot read {path}: {exc.strerror}")
            return False
