"""Florence-2 engines: OCR with regions (tiled) and table/chart region detection.

The factories live in ``docintel.engines.florence2.engine`` (``build_ocr``,
``build_detector``) and are reached through the engine registry. Nothing here
imports torch at module level.
"""
