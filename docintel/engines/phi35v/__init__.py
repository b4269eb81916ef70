"""Phi-3.5-vision-instruct, written on transformers' CLIP and Phi-3 building blocks.

The checkpoint's own hub code does not run on transformers 5 and a service must
not execute code from a model hub, so the model, its processor and its loading
live here; the ``phi35v`` extraction engine turns table and chart regions into
Markdown and JSON with it.
"""
