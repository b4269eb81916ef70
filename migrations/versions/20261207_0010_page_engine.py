"""The engine that read each page's text, for metrics by engine

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added, never rebuilt: SQLite adds a nullable column in place. Pages read before
    # keep no engine (their lines name it): filling it in would rewrite every page row
    # and its search index on PostgreSQL, too long for a migration on a large database.
    op.add_column("pages", sa.Column("engine", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # In place (SQLite 3.35+ drops columns itself): a batch rebuild of pages would
    # break the views over it and cascade into every text line.
    op.drop_column("pages", "engine")
