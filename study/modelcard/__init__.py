"""A model card: what the exported model is, what it learned from, how well it did on patients it never saw.

``python -m study.export`` writes one beside the ONNX file (``OUT.card.md`` and ``OUT.card.json``):
choice.py says which checkpoint a study's chosen model is, scores.py reads its held-out scores from the study's
files, provenance.py what it was trained on and by which code, latency.py times it through ONNX Runtime,
card.py assembles the card and markdown.py renders it.
"""
