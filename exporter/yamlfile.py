"""Reading a YAML file of ours (the configuration, the web configuration) strictly and safely.

Both files hold secrets or point at them, and both are written by hand: a key given twice is an
error (PyYAML would keep the last one silently), every error has a line and column, and no
message quotes a value that might be a password.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml


class YAMLFileError(ValueError):
    """The text is not usable YAML; the message says where and why, without quoting values."""


def read_text(path: str | os.PathLike[str], what: str) -> str:
    """The text of the file `what` (e.g. "configuration file"); YAMLFileError naming it otherwise."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise YAMLFileError(f"{shown}: cannot read the {what}: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")  # -sig: a file saved by Windows Notepad starts with a BOM
    except UnicodeDecodeError as exc:
        raise YAMLFileError(f"{shown}: not UTF-8 text (byte {exc.start} cannot be decoded)") from None


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping; PyYAML would silently keep the last one."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and turns unreadable scalars into located errors."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        # `!!map x` hands a scalar here; the parent's check reports that properly.
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise _DuplicateKeyError(None, None, f"key {key_node.value!r} is given twice", key_node.start_mark)
                seen.add(ident)
        return super().construct_mapping(node, deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # An int of 5000 digits, a date like 2024-13-45 or `!!timestamp x` makes PyYAML raise a
        # bare ValueError or AttributeError without a position; give it one.
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # whatever a constructor trips over is a bad value in the file
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"this looks like a YAML {kind} but is not a valid one; quote it", node.start_mark
            ) from exc


def load_yaml(text: str) -> Any:
    """The document in `text`, built by a SafeLoader (no Python objects); YAMLFileError otherwise."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: no Python objects
    except yaml.MarkedYAMLError as exc:
        raise YAMLFileError(_yaml_error(exc)) from None
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        raise YAMLFileError(
            f"line {line}, column {column}: YAML cannot hold the character #x{exc.character:04x}"
            if isinstance(exc.character, int)
            else f"line {line}, column {column}: {exc.reason}"
        ) from None
    except yaml.YAMLError as exc:
        raise YAMLFileError(f"not valid YAML ({type(exc).__name__})") from None
    except RecursionError:
        raise YAMLFileError("not usable YAML: nested too deeply") from None
    except Exception as exc:  # a PyYAML constructor tripping over odd input: still the file's fault
        raise YAMLFileError(f"not usable YAML ({type(exc).__name__})") from None


# A value quoted in a PyYAML message may be a tag or alias the user meant as a password
# (`password: !Secr3t` reads as a tag), so quoted text is dropped unless it is one character
# or one of PyYAML's token names such as '<stream end>'.
_HARMLESS_QUOTED = re.compile(r"'(?:.|\\.|\\x[0-9a-f]{2}|\\u[0-9a-f]{4}|<[a-z ]+>)'")
_QUOTED = re.compile(r"'[^']*'")


def _redact(problem: str) -> str:
    return _QUOTED.sub(lambda m: m[0] if _HARMLESS_QUOTED.fullmatch(m[0]) else "(value not shown)", problem)


def _yaml_error(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
    if isinstance(exc, _DuplicateKeyError):
        return f"{where}: {exc.problem}; each key may appear once in a mapping"
    problem = _redact(exc.problem or exc.context or "not valid YAML")
    message = f"{where}: YAML syntax error: {problem}"
    if exc.context and exc.problem:
        message += f" ({exc.context})"
    if "tag" in problem:
        message += "; a value starting with ! is read as a YAML tag: put it in quotes"
    elif "alias" in problem:
        message += "; a value starting with * is read as a YAML alias: put it in quotes"
    return message


def _line_column(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
