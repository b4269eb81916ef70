"""Views (and on PostgreSQL a search function) for the questions users ask in SQL

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 21:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The text of every page, with its document's file name: "page N of file X".
_PAGE_TEXTS = """
CREATE VIEW page_texts AS
SELECT p.document_id, d.filename, p.number AS page_number, p.status, p.text_source, p.text
FROM pages p JOIN documents d ON d.id = p.document_id
"""

# Failed pages and why, newest first when ordered by updated_at.
_FAILED_PAGES = """
CREATE VIEW failed_pages AS
SELECT p.document_id, d.filename, p.number AS page_number, p.error_code, p.error_message,
       p.attempts, p.updated_at
FROM pages p JOIN documents d ON d.id = p.document_id
WHERE p.status = 'failed'
"""

# Ranked full-text search with highlighted snippets, in one call.
_SEARCH = """
CREATE FUNCTION search_pages(query text, max_hits integer DEFAULT 20)
RETURNS TABLE (document_id uuid, filename varchar, page_number integer, snippet text, rank real)
LANGUAGE sql STABLE AS $$
    SELECT p.document_id, d.filename, p.number,
           ts_headline('english', coalesce(p.text, ''), q,
                       'StartSel=<mark>, StopSel=</mark>, MaxFragments=2, MaxWords=18, MinWords=6'),
           ts_rank(p.search_vector, q)
    FROM pages p JOIN documents d ON d.id = p.document_id,
         websearch_to_tsquery('english', query) AS q
    WHERE p.search_vector @@ q
    ORDER BY ts_rank(p.search_vector, q) DESC, d.created_at DESC, p.number
    LIMIT max_hits
$$
"""


def upgrade() -> None:
    op.execute(_PAGE_TEXTS)
    op.execute(_FAILED_PAGES)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_SEARCH)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION search_pages(text, integer)")
    op.execute("DROP VIEW failed_pages")
    op.execute("DROP VIEW page_texts")
