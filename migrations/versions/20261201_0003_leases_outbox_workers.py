"""Fenced leases on pages, the outbox, worker heartbeats and the sweep's turn-taking row

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True)
_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _statement_time() -> sa.TextClause:
    if op.get_bind().dialect.name == "postgresql":
        return sa.text("statement_timestamp()")
    return sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    # Nullable, no default: adding them rewrites nothing on Postgres.
    op.add_column("pages", sa.Column("claim_token", sa.String(length=36), nullable=True))
    op.add_column("pages", sa.Column("lease_expires_at", _TIMESTAMP, nullable=True))
    op.add_column("pages", sa.Column("claim_task", sa.String(length=64), nullable=True))
    op.drop_index("ix_pages_status_claimed_at", table_name="pages")
    op.create_index(
        "ix_pages_status_lease_expires_at", "pages", ["status", "lease_expires_at"], unique=False
    )

    op.create_table(
        "outbox",
        sa.Column("id", _BIGID, autoincrement=True, nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("args", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("queue", sa.String(length=32), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        # The database's clock at the statement (now() would be the transaction's start).
        sa.Column("created_at", _TIMESTAMP, server_default=_statement_time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(op.f("ix_outbox_created_at"), "outbox", ["created_at"], unique=False)

    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.String(length=128), nullable=False),
        sa.Column("started_at", _TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", _TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index(op.f("ix_workers_heartbeat_at"), "workers", ["heartbeat_at"], unique=False)

    cluster_state = op.create_table(
        "cluster_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_sweep_at", _TIMESTAMP, nullable=True),
        sa.Column("swept_by", sa.String(length=128), nullable=True),
        sa.Column("broker_epoch", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_state")),
    )
    # The one row sweeps lock to take turns; it must exist before any worker starts.
    op.bulk_insert(cluster_state, [{"id": 1}])


def downgrade() -> None:
    op.drop_table("cluster_state")
    op.drop_index(op.f("ix_workers_heartbeat_at"), table_name="workers")
    op.drop_table("workers")
    op.drop_index(op.f("ix_outbox_created_at"), table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_pages_status_lease_expires_at", table_name="pages")
    op.create_index("ix_pages_status_claimed_at", "pages", ["status", "claimed_at"], unique=False)
    # Plain DROP COLUMN, not a batch rebuild: see 0002.
    op.drop_column("pages", "claim_task")
    op.drop_column("pages", "lease_expires_at")
    op.drop_column("pages", "claim_token")
