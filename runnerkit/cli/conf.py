"""``conf``: the effective configuration, and the layer each value came from."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from runnerkit.cli.common import UsageProblem, config_options, load_config, main
from runnerkit.config import Configuration, Setting
from runnerkit.errors import RunnerkitError

#: Where the ``# layer`` column of ``conf`` starts, at most.
LAYER_COLUMN = 64


def shown(setting: Setting) -> str:
    """The value of *setting* as ``conf`` prints it: as written, paths made absolute.

    A list of directories is joined with ``", "``; ``--json`` gives it exactly.
    """
    value = setting.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value)
    return setting.text


def as_json(value: Any) -> Any:
    """*value* as JSON: paths as text, durations in seconds, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, tuple):
        return [as_json(item) for item in value]
    return value


def setting_json(setting: Setting) -> dict[str, Any]:
    """One setting as a JSON object: its typed value, its text and its layer."""
    return {
        "value": as_json(setting.value),
        "text": setting.text,
        "layer": setting.layer,
        "inherited": setting.inherited,
    }


def origin(setting: Setting) -> str:
    """The layer of *setting*, and ``via [runner.defaults]`` when it was inherited."""
    return f"{setting.layer} via [runner.defaults]" if setting.inherited else setting.layer


def lines(settings: tuple[Setting, ...]) -> list[str]:
    """``[section] key: value    # layer``, one a setting, the layers in one column."""
    left = [f"[{s.section}] {s.key}: {shown(s)}".rstrip() for s in settings]
    column = min(LAYER_COLUMN, max((len(text) for text in left), default=0))
    return [f"{text:<{column}}  # {origin(s)}" for text, s in zip(left, settings, strict=True)]


def document(config: Configuration) -> dict[str, Any]:
    """The whole effective configuration as ``conf --json`` prints it."""
    sections: dict[str, dict[str, Any]] = {}
    for setting in config.settings():
        sections.setdefault(setting.section, {})[setting.key] = setting_json(setting)
    return {
        "layers": ["defaults", *config.layers],
        "import_path": [
            {"path": str(entry.path), "origin": entry.origin} for entry in config.import_path
        ],
        "sections": sections,
    }


@main.command()
@config_options
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
@click.argument("section", required=False)
@click.argument("key", required=False)
def conf(
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    json_output: bool,
    section: str | None,
    key: str | None,
) -> None:
    """Print the effective configuration, each value with the layer it came from.

    Every section by default, SECTION alone (such as lmtp or runner.in), or the value
    of KEY in SECTION alone, for a script.  A value is shown as its layer wrote it,
    paths made absolute; the layer is defaults, a -C file, or --var-dir.  A runner
    section's key that no layer sets comes from [runner.defaults].  Reads no var dir.

    --json prints {"layers": [...], "import_path": [...], "sections": {SECTION: {KEY:
    {"value", "text", "layer", "inherited"}}}}: value typed (durations in seconds),
    text as written; for SECTION or KEY, only that part.
    """
    config = load_config(config_files, var_dir)
    with config:
        try:
            if key is not None and section is not None:
                setting = config.setting(section, key)
                click.echo(json.dumps(setting_json(setting)) if json_output else shown(setting))
                return
            settings = config.settings(section)
        except RunnerkitError as error:
            raise UsageProblem(str(error)) from error
        if json_output:
            if section is None:
                click.echo(json.dumps(document(config), indent=2))
            else:
                chosen = {setting.key: setting_json(setting) for setting in settings}
                click.echo(json.dumps(chosen, indent=2))
            return
        if section is None:
            click.echo(f"# layers, bottom first: {', '.join(['defaults', *config.layers])}")
        for line in lines(settings):
            click.echo(line)
        if section is None:
            click.echo("# runner classes are imported first from:")
            for entry in config.import_path:
                click.echo(f"#   {entry.path}  ({entry.origin})")
