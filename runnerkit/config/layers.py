"""Parsing and checking one layer of configuration text."""

from __future__ import annotations

import configparser
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runnerkit.config.schema import RUNNER_KEYS, RUNNER_PREFIX, SECTIONS, Key
from runnerkit.errors import ConfigurationError

_RUNNER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_NO_DEFAULT_SECTION = "\0no default section"


@dataclass(frozen=True)
class Layer:
    """One named layer of the stack: its sections, with values converted and checked."""

    #: The name the layer was pushed under.
    name: str
    #: section name -> key -> (typed value, raw text).
    sections: dict[str, dict[str, tuple[Any, str]]]
    #: The directory that relative directories in the layer are relative to: a file's
    #: own directory, or the current directory when the layer was pushed as text.
    base: Path = Path("/")


def where(layer: str, section: str, key: str | None = None, value: str | None = None) -> str:
    """Describe a place in the configuration for an error message."""
    text = f"layer {layer!r}, section [{section}]"
    if key is not None:
        text += f", key {key!r}"
    if value is not None:
        text += f", value {value!r}"
    return text


def keys_of(section: str) -> dict[str, Key] | None:
    """The schema keys of *section*, or None when the schema has no such section."""
    if section in SECTIONS:
        return SECTIONS[section]
    if section.startswith(RUNNER_PREFIX) and _RUNNER_NAME.fullmatch(section[len(RUNNER_PREFIX) :]):
        return RUNNER_KEYS
    return None


def parse_layer(name: str, text: str, base: Path | None = None) -> Layer:
    """Parse INI *text* into a checked :class:`Layer`.

    :param name: the layer's name, used in every error message.
    :param text: ``key: value`` lines under ``[section]`` headers; common leading
        indentation is removed first, so indented triple-quoted strings work.
    :param base: the directory relative directories in the text are relative to (the
        directory of the file it was read from); by default the current directory.
    :raises ConfigurationError: the text does not parse, or names an unknown section or
        key, or holds a value its key does not accept.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"a layer needs a non-empty name, got {name!r}")
    if not isinstance(text, str):
        raise ConfigurationError(
            f"layer {name!r}: configuration text must be a str, got {type(text).__name__}"
        )
    parser = configparser.ConfigParser(
        interpolation=None,
        delimiters=(":", "="),
        comment_prefixes=("#", ";"),
        strict=True,
        empty_lines_in_values=False,
        default_section=_NO_DEFAULT_SECTION,
    )
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    try:
        parser.read_string(textwrap.dedent(text), source=name)
    except configparser.Error as error:
        message = " ".join(str(error).split())
        raise ConfigurationError(f"layer {name!r} does not parse: {message}") from error
    sections: dict[str, dict[str, tuple[Any, str]]] = {}
    for section in parser.sections():
        schema = keys_of(section)
        if schema is None:
            known = ", ".join(f"[{s}]" for s in (*SECTIONS, "runner.NAME"))
            raise ConfigurationError(
                f"layer {name!r}: unknown section [{section}]; known sections: {known}"
                " (runner names use a-z, 0-9, '_' and '-')"
            )
        values: dict[str, tuple[Any, str]] = {}
        for key, raw in parser.items(section):
            if key not in schema:
                raise ConfigurationError(
                    f"{where(name, section, key, raw)}: unknown key; "
                    f"known keys: {', '.join(sorted(schema))}"
                )
            try:
                values[key] = (schema[key].convert(raw), raw)
            except ValueError as error:
                raise ConfigurationError(f"{where(name, section, key, raw)}: {error}") from error
        sections[section] = values
    return Layer(name, sections, (base or Path.cwd()).absolute())


def layer_text(layer: Layer) -> str:
    """*layer* as INI text that reads back as the same layer wherever it is written.

    Each value is written as it was given, a value of several lines with its later
    lines indented; a list of directories (``[runnerkit] import_path``) is written
    absolute, made so against the layer's own directory, so that a file written
    elsewhere names the same directories.
    """
    lines: list[str] = []
    for section, values in layer.sections.items():
        lines.append(f"[{section}]")
        schema = keys_of(section) or {}
        for key, (value, raw) in values.items():
            if key in schema and schema[key].is_dirs:
                entries = [os.path.normpath(layer.base / entry) for entry in value]
            else:
                entries = raw.split("\n")
            first, *rest = entries or [""]
            lines.append(f"{key}: {first}".rstrip())
            lines.extend(f"    {entry}" for entry in rest)
    return "".join(line + "\n" for line in lines)
