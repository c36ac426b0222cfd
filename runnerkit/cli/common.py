"""What every ``runnerkit`` subcommand shares: errors, exit statuses, options, the group.

The options that say which site a command works on, ``-C/--config FILE``, ``--var-dir
DIR`` and ``--path DIR``, are taken before the subcommand (by the group) and after it
(by the subcommand), in any mix: ``runnerkit -C site.ini status`` and ``runnerkit
status -C site.ini`` are the same.  Layers given in both places are pushed in order,
the group's first; a ``--var-dir`` after the subcommand wins over one before it; the
``--path`` directories of both count.  ``$RUNNERKIT_CONFIG`` and ``$RUNNERKIT_VAR_DIR``
stand in for ``-C`` and ``--var-dir`` when neither place gives them.
"""

from __future__ import annotations

import functools
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from runnerkit.config import ImportDir, use_config
from runnerkit.errors import RunnerkitError
from runnerkit.importpath import use_import_path
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
        # The import path a command puts on sys.path is its own: a command run in
        # this process (a test, a script) leaves sys.path as it found it.
        saved_path = list(sys.path)
        try:
            with runnerkit_usage_errors():
                return super().invoke(ctx)
        finally:
            sys.path[:] = saved_path


@dataclass(frozen=True)
class SiteOptions:
    """Which site a command works on, as its command line and environment say."""

    #: The ``-C`` files, in push order.
    config_files: tuple[Path, ...] = ()
    #: The ``--var-dir``, or None for the layers' own (by default ``./var``).
    var_dir: Path | None = None
    #: The ``--path`` directories, in order.
    import_path: tuple[Path, ...] = ()
    #: Whether :attr:`config_files` came from ``$RUNNERKIT_CONFIG``.
    config_from_environment: bool = False
    #: Whether :attr:`var_dir` came from ``$RUNNERKIT_VAR_DIR``.
    var_dir_from_environment: bool = False

    def then(
        self, config_files: tuple[Path, ...], var_dir: Path | None, import_path: tuple[Path, ...]
    ) -> SiteOptions:
        """These options followed by a subcommand's: its layers after (the environment's
        replaced), its var dir over, its directories after."""
        files = self.config_files
        from_environment = self.config_from_environment
        if config_files:
            files = config_files if from_environment else files + config_files
            from_environment = False
        return SiteOptions(
            config_files=files,
            var_dir=var_dir if var_dir is not None else self.var_dir,
            import_path=self.import_path + import_path,
            config_from_environment=from_environment,
            var_dir_from_environment=var_dir is None and self.var_dir_from_environment,
        )

    @property
    def var_dir_layer(self) -> str:
        """The name of the var dir's layer: where it was given."""
        return "$RUNNERKIT_VAR_DIR" if self.var_dir_from_environment else "--var-dir"

    def import_dirs(self) -> list[ImportDir]:
        """The ``--path`` directories, then the current directory, marked by origin."""
        given = [ImportDir(path.absolute(), "--path") for path in self.import_path]
        return [*given, ImportDir(Path.cwd(), "the current directory")]


#: Where the group and the subcommand leave their :class:`SiteOptions` in ``ctx.meta``.
_GROUP_OPTIONS = "runnerkit.group_options"
_OPTIONS = "runnerkit.options"


def site_options(ctx: click.Context | None = None) -> SiteOptions:
    """The site options of the command running now: the group's and its own, merged.

    Outside a command (a script calling :func:`load_config`): no options.
    """
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return SiteOptions()
    options = ctx.meta.get(_OPTIONS) or ctx.meta.get(_GROUP_OPTIONS)
    return options if isinstance(options, SiteOptions) else SiteOptions()


#: The help of ``-C``, for the group and the commands that work on the site it names.
CONFIG_HELP = "An INI file over the defaults; repeat for more layers ($RUNNERKIT_CONFIG)."


def _site_option_decorators(
    *, group: bool, var_dir: bool = True, config_help: str = CONFIG_HELP
) -> list[Callable[[F], F]]:
    """``-C``, ``--var-dir`` and ``--path``; only the group reads the environment."""
    decorators = [
        click.option(
            "-C",
            "--config",
            "config_files",
            multiple=True,
            envvar="RUNNERKIT_CONFIG" if group else None,
            type=click.Path(dir_okay=False, path_type=Path),
            help=config_help,
        ),
        click.option(
            "--var-dir",
            envvar="RUNNERKIT_VAR_DIR" if group else None,
            type=click.Path(file_okay=False, path_type=Path),
            metavar="DIR",
            help="The var dir (default: $RUNNERKIT_VAR_DIR, else ./var).",
        ),
        click.option(
            "--path",
            "import_path",
            multiple=True,
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            metavar="DIR",
            help="A directory to import runner classes from, before [runnerkit] "
            "import_path; repeat for more (the current directory always is one).",
        ),
    ]
    return decorators if var_dir else [decorators[0], decorators[2]]


def layer_options(function: F) -> F:
    """Add ``-C/--config`` and ``--path`` alone, for a command with a var dir of its own.

    The function receives them as given after the subcommand (``config_files``,
    ``import_path``); the group's are in :func:`site_options`.
    """
    for decorator in reversed(_site_option_decorators(group=False, var_dir=False)):
        function = decorator(function)
    return function


def throwaway_layer_options(function: F) -> F:
    """:func:`layer_options` for a command whose site is a throwaway one of its own
    (``demo``): ``$RUNNERKIT_CONFIG``, which names the user's site, does not apply, and
    the help of ``-C`` does not claim it does."""
    decorators = _site_option_decorators(
        group=False,
        var_dir=False,
        config_help="An INI file over the demo's own layer; repeat for more layers "
        "(not $RUNNERKIT_CONFIG, which names your own site).",
    )
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def config_options(function: F) -> F:
    """Add ``-C/--config``, ``--var-dir`` and ``--path`` to a subcommand.

    The subcommand's function receives ``config_files`` and ``var_dir`` merged with
    those given before the subcommand (see the module's documentation); the whole,
    ``--path`` included, is :func:`site_options`, which :func:`load_config` reads.
    """

    @functools.wraps(function)
    def merged(
        *args: Any,
        config_files: tuple[Path, ...],
        var_dir: Path | None,
        import_path: tuple[Path, ...],
        **kwargs: Any,
    ) -> Any:
        ctx = click.get_current_context()
        options = site_options(ctx).then(config_files, var_dir, import_path)
        ctx.meta[_OPTIONS] = options
        return function(
            *args, config_files=options.config_files, var_dir=options.var_dir, **kwargs
        )

    decorated: Any = merged
    for decorator in reversed(_site_option_decorators(group=False)):
        decorated = decorator(decorated)
    return decorated  # type: ignore[no-any-return]


def load_config(
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    *,
    read_only: bool = False,
    existing: bool = False,
) -> Site:
    """Build the site the options describe, and put its import path on ``sys.path``.

    The import path is the command's ``--path`` directories, the current directory,
    then ``[runnerkit] import_path`` (:mod:`runnerkit.importpath`).

    :param read_only: open the site for a look that changes nothing
        (:meth:`Site.open_existing`): the var dir must exist, and nothing is created.
    :param existing: for commands that change a site that must exist (requeue,
        discard, unshunt): the var dir must exist, but the site is writable.
    :raises UsageProblem: a layer is bad, an import directory is missing, or (read
        only, or existing) the var dir does not exist; exit status 2.
    """
    options = site_options()
    layer = options.var_dir_layer if var_dir == options.var_dir else "--var-dir"
    try:
        if read_only or existing:
            config = Site.open_existing(
                config_files,
                var_dir,
                import_path=options.import_dirs(),
                var_dir_layer=layer,
                read_only=read_only,
            )
        else:
            config = Site.load(
                config_files, var_dir, import_path=options.import_dirs(), var_dir_layer=layer
            )
    except RunnerkitError as error:
        raise UsageProblem(str(error)) from error
    try:
        use_import_path(config)
    except RunnerkitError as error:
        config.close()
        raise UsageProblem(str(error)) from error
    return config


@contextmanager
def opened(
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    *,
    read_only: bool = False,
    existing: bool = False,
) -> Iterator[Site]:
    """The site, current and closed afterwards; runnerkit errors become exits.

    :param read_only: for commands that only look (``status``, ``queues``, ``lists
        list`` ...): the var dir must exist, and nothing is created in it.
    """
    config = load_config(config_files, var_dir, read_only=read_only, existing=existing)
    try:
        with config, use_config(config):
            yield config
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    except sqlite3.Error as error:
        raise CommandError(
            f"the database {str(config.database_path)!r} cannot be used: {error} (restore "
            "it from a backup, or check it with: sqlite3 FILE 'PRAGMA integrity_check')"
        ) from error


def _group_options(function: F) -> F:
    for decorator in reversed(_site_option_decorators(group=True)):
        function = decorator(function)
    return function


@click.group(cls=RunnerkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runnerkit")
@_group_options
@click.pass_context
def main(
    ctx: click.Context,
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    import_path: tuple[Path, ...],
) -> None:
    """Run and inspect runnerkit queues, runners and lists.

    -C, --var-dir and --path may come before the subcommand or after it; layers given
    in both places are pushed in order, these first.
    """
    ctx.meta[_GROUP_OPTIONS] = SiteOptions(
        config_files=config_files,
        var_dir=var_dir,
        import_path=import_path,
        config_from_environment=(
            ctx.get_parameter_source("config_files") is ParameterSource.ENVIRONMENT
        ),
        var_dir_from_environment=(
            ctx.get_parameter_source("var_dir") is ParameterSource.ENVIRONMENT
        ),
    )


def find_list(config: Site, name: str) -> MailingList:
    """The list named *name* (posting address or list id), or a :class:`CommandError`."""
    mlist = config.lists.find(name)
    if mlist is None:
        raise CommandError(f"no mailing list {name!r}; see 'runnerkit lists list'")
    return mlist


def warn_other_queues(site: Site) -> None:
    """A warning on stderr if the master of *site*'s var dir runs with other queues than
    *site*'s (:func:`runnerkit.master.client.other_queues`): a look at these would show
    queues it does not use."""
    from runnerkit.master.client import other_queues

    warning = other_queues(site)
    if warning is not None:
        click.echo(f"runnerkit: warning: {warning}", err=True)
