"""docintel: PDFs and scans to structured, queryable data."""

__version__ = "0.1.0"
