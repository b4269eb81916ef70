"""The queue a waiting page needs, for engines chosen per document

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and added in place (see 0010). Pages left waiting by an older version
    # have none: they wait on the queue of the configured engines.
    op.add_column("pages", sa.Column("queue", sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column("pages", "queue")
