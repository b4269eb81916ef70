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
