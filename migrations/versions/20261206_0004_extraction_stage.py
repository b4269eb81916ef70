"""Extraction stage: pages wait in 'extract' for their tables and charts; a table view

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("pending", "ocr", "done", "failed")
_NEW = ("pending", "ocr", "extract", "done", "failed")

# One row per table: its document, page, place, and rows as JSON. The dialects
# differ only in how they read a JSON field.
_VIEW = """
CREATE VIEW document_tables AS
SELECT p.document_id,
       d.filename,
       p.number AS page_number,
       e.idx AS table_index,
       row_number() OVER (PARTITION BY p.document_id ORDER BY p.number, e.idx) AS table_number,
       e.id AS extraction_id,
       e.status,
       e.engine,
       e.bbox,
       e.markdown,
       {rows} AS rows,
       coalesce({header_rows}, 0) AS header_rows
FROM extractions e
JOIN pages p ON p.id = e.page_id
JOIN documents d ON d.id = p.document_id
WHERE e.kind = 'table'
"""
_JSON_FIELDS = {
    "postgresql": {"rows": "e.data -> 'rows'", "header_rows": "(e.data ->> 'header_rows')::int"},
    "sqlite": {
        "rows": "json_extract(e.data, '$.rows')",
        "header_rows": "json_extract(e.data, '$.header_rows')",
    },
}


def _status_check(values: tuple[str, ...]) -> None:
    allowed = ", ".join(f"'{v}'" for v in values)
    with op.batch_alter_table("pages") as batch:
        batch.drop_constraint(op.f("ck_pages_page_status"), type_="check")
        batch.create_check_constraint("page_status", sa.text(f"status IN ({allowed})"))


def upgrade() -> None:
    _status_check(_NEW)
    op.execute(_VIEW.format(**_JSON_FIELDS[op.get_bind().dialect.name]))


def downgrade() -> None:
    op.execute("DROP VIEW document_tables")
    op.execute("UPDATE pages SET status = 'done' WHERE status = 'extract'")
    _status_check(_OLD)
