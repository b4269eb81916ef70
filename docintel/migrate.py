"""Apply Alembic migrations programmatically (``docintel db upgrade``, tests, embedded start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

_ROOT = Path(__file__).resolve().parent.parent


def find_alembic_ini() -> Path:
    """``alembic.ini`` of the checkout, else of the working directory.

    An editable install (``pip install -e .``) finds it next to the package. A
    regular install (the Docker images: ``pip install .`` in ``/app``) puts the
    package in site-packages, away from ``alembic.ini`` and ``migrations/``,
    which stay in the working directory the image runs in.
    """
    candidates = [_ROOT / "alembic.ini", Path.cwd() / "alembic.ini"]
    for ini in candidates:
        if ini.is_file() and (ini.parent / "migrations").is_dir():
            return ini
    raise FileNotFoundError(
        "alembic.ini and migrations/ were found neither next to the package nor in the"
        f" working directory ({', '.join(str(c.parent) for c in candidates)}); run from the"
        " docintel checkout"
    )


def alembic_config(database_url: str) -> Config:
    ini = find_alembic_ini()
    config = Config(str(ini))
    config.set_main_option("script_location", str(ini.parent / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


class SchemaNotReady(RuntimeError):
    """The database cannot be used as it is; the message says what to do."""


def ensure_current(database_url: str) -> None:
    """Make sure the schema is at the code's head before a command reads or writes.

    An embedded SQLite database migrates itself; any other database is the
    operator's to migrate, so the error says how.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    if database_url.startswith("sqlite"):
        upgrade(database_url)
        return
    heads = set(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as error:
        reason = str(error.orig if hasattr(error, "orig") else error).strip().splitlines()[0]
        raise SchemaNotReady(f"cannot reach the database: {reason}") from None
    finally:
        engine.dispose()
    if current != heads:
        state = "never migrated" if not current else f"at {', '.join(sorted(current))}"
        raise SchemaNotReady(
            f"the database is {state}; this docintel needs {', '.join(sorted(heads))}: "
            "run `docintel db upgrade`"
        )
