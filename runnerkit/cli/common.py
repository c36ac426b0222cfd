"""What every ``runnerkit`` subcommand shares: errors, exit statuses, options, the group."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from runnerkit.config import use_config
from runnerkit.errors import RunnerkitError
from runnerkit.lists import MailingList
from runnerkit.site import Site

F = TypeVar("F", bound=Callable[..., Any])

#: Exit status when the command could not do its job.
EXIT_FAILED = 1
#: Exit status for bad usage or configuration.
EXIT_USAGE = 2


class CommandError(click.ClickException):
    """A failure the user can act on: printed as ``runnerkit: error: ...`` on stderr."""

    exit_code = EXIT_FAILED

    def show(self, file: Any = None) -> None:
        click.echo(f"runnerkit: error: {self.format_message()}", err=True)


class UsageProblem(CommandError):
    exit_code = EXIT_USAGE


class UsageMistake(UsageProblem):
    """A usage error click found (a missing argument, an unknown option), shown like ours."""

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message())
        self.ctx = error.ctx

    def show(self, file: Any = None) -> None:
        super().show(file)
        if self.ctx is not None:
            click.echo(self.ctx.get_usage(), err=True)
            click.echo(f"Try '{self.ctx.command_path} --help' for help.", err=True)


@contextmanager
def runnerkit_usage_errors() -> Iterator[None]:
    """Turn click's usage errors into :class:`UsageMistake`; help stays help."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as error:
        raise UsageMistake(error) from error


class RunnerkitGroup(click.Group):
    """The ``runnerkit`` group: every error, click's own included, reads ``runnerkit: error:``."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with runnerkit_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with runnerkit_usage_errors():
            return super().invoke(ctx)


def config_options(function: F) -> F:
    """Add ``-C/--config`` and ``--var-dir`` to a subcommand."""
    function = click.option(
        "--var-dir",
        envvar="RUNNERKIT_VAR_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="The var dir (default: $RUNNERKIT_VAR_DIR, else ./var).",
    )(function)
    return click.option(
        "-C",
        "--config",
        "config_files",
        multiple=True,
        envvar="RUNNERKIT_CONFIG",
        type=click.Path(dir_okay=False, path_type=Path),
        help="An INI file over the defaults; repeat for more layers ($RUNNERKIT_CONFIG).",
    )(function)


def load_config(config_files: tuple[Path, ...], var_dir: Path | None) -> Site:
    """Build the site the options describe."""
    try:
        config = Site.load(config_files, var_dir)
    except RunnerkitError as error:
        raise UsageProblem(str(error)) from error
    return config


@contextmanager
def opened(config_files: tuple[Path, ...], var_dir: Path | None) -> Iterator[Site]:
    """The site, current and closed afterwards; runnerkit errors become exits."""
    config = load_config(config_files, var_dir)
    try:
        with config, use_config(config):
            yield config
    except RunnerkitError as error:
        raise CommandError(str(error)) from error


@click.group(cls=RunnerkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runnerkit")
def main() -> None:
    """Run and inspect runnerkit queues, runners and lists."""


def find_list(config: Site, name: str) -> MailingList:
    """The list named *name* (posting address or list id), or a :class:`CommandError`."""
    mlist = config.lists.find(name)
    if mlist is None:
        raise CommandError(f"no mailing list {name!r}; see 'runnerkit lists list'")
    return mlist
