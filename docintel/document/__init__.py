"""Page analysis: what a document is, its pages as images and text, and their order.

Pure functions over files, images and geometry: nothing here touches the
database, Celery, blob storage or an engine. The pipeline's stages call them;
they raise ``docintel.errors.DocumentError`` for bad input.
"""
