"""Scheduled ingestion: the state of each file version seen in a source

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("source_files") as batch:
        batch.add_column(
            sa.Column("state", sa.String(length=16), nullable=False, server_default="seen")
        )
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_source_files_source_id_state", "source_files", ["source_id", "state"])
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("last_error")
    op.drop_index("ix_source_files_source_id_state", table_name="source_files")
    with op.batch_alter_table("source_files") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("error")
        batch.drop_column("state")
