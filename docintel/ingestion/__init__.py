"""Scheduled ingestion: inbox folders and S3 prefixes, scanned on a schedule.

``catalog`` keeps the sources (the ``sources`` table, and those named in
settings), ``inboxes`` lists, copies and files away what is in them, and
``scan`` decides what to import, exactly once, with ``source_files`` as the
bookkeeping.
"""
