"""pages.claimed_by: who holds a page, so claims of dead processes can be freed at once

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing on Postgres.
    op.add_column("pages", sa.Column("claimed_by", sa.String(length=128), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35 has it), not a batch table rebuild: with
    # foreign keys on, SQLite's DROP TABLE of the old pages would cascade-delete
    # every text line and extraction.
    op.drop_column("pages", "claimed_by")
