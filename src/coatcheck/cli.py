"""The `coatcheck` command: the demo app, session operations on a store, new secrets.

Every failure the user can fix (a bad URL, an unreachable store, a store that cannot list
sessions, an ambiguous hint) is one line on stderr and a non-zero exit: 1 when the work
failed, 2 when the command was used wrongly. Set COATCHECK_DEBUG=1 to see tracebacks.
The `sessions` commands live in cli_sessions.py, store access in cli_store.py, and
printing in cli_output.py.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import NoReturn

try:
    import click
    import rich  # noqa: F401  (the sessions commands print with it)
except ModuleNotFoundError as missing:  # pragma: no cover - a bare install without the extra
    print(
        f"coatcheck: the command line needs the {missing.name!r} package: pip install 'coatcheck[cli]'",
        file=sys.stderr,
    )
    raise SystemExit(1) from None

from . import __version__
from .cli_output import stderr
from .cli_sessions import sessions
from .cli_store import Failure
from .errors import CoatcheckError, ConfigurationError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coatcheck")
def cli() -> None:
    """coatcheck: HTTP sessions for Python web apps.

    Run the demo app, inspect and revoke sessions in a store, or make a secret.
    """


@cli.command()
@click.option(
    "--store",
    "store_url",
    default="sqlite:///coatcheck-demo.db",
    show_default=True,
    metavar="URL",
    help="Where sessions are kept: memory://, sqlite:///FILE, redis://HOST/DB, cookie://, ...",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on."
)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the development secret is kept (created, mode 0600, if missing). "
    "Default: .coatcheck-demo-secret next to the SQLite file, else in the working directory.",
)
@click.option(
    "--origin",
    "origins",
    multiple=True,
    metavar="URL",
    help="Another origin the browser may use, e.g. http://192.168.1.5:8000 with --host 0.0.0.0 "
    "(forms from unknown origins are refused by the CSRF check).",
)
@click.option(
    "--instances",
    default=1,
    show_default=True,
    type=click.IntRange(1, 8),
    help="Serve the app from N processes, on ports PORT to PORT+N-1, to see which sessions follow you.",
)
@click.option("--instance-number", default=1, type=click.IntRange(1, 8), hidden=True)
def demo(
    store_url: str,
    host: str,
    port: int,
    secret_file: Path | None,
    origins: tuple[str, ...],
    instances: int,
    instance_number: int,
) -> None:
    """Run the demo app: log in, fill a cart, and watch the cookie and the store."""
    try:
        from .demo.server import run as serve
    except ModuleNotFoundError as exc:
        raise Failure(f"the demo needs the {exc.name!r} package: pip install 'coatcheck[demo]'") from None
    try:
        serve(
            store_url=store_url,
            host=host,
            port=port,
            secret_file=secret_file,
            origins=origins,
            say=_say,
            instances=instances,
            instance_number=min(instance_number, instances),
        )
    except ConfigurationError as exc:
        raise Failure(str(exc), 2) from None
    except CoatcheckError as exc:
        raise Failure(str(exc)) from None


def _say(text: str) -> None:
    stderr.print(text, markup=False, soft_wrap=True)


@cli.command()
def secret() -> None:
    """Print a strong new secret (32 random bytes, URL-safe base64) for SessionMiddleware(secret=...)."""
    click.echo(secrets.token_urlsafe(32))


cli.add_command(sessions)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of the `coatcheck` script and of `python -m coatcheck`."""
    cli.main(args=argv, prog_name="coatcheck")
    raise SystemExit(0)  # pragma: no cover - click always exits
