"""One router per resource: documents, their results, jobs, search, and operations."""
