"""Data for equizoo: readers, generators, graphs.

This top-level package shadows Hugging Face's ``datasets`` inside this project; ``tests/test_architecture.py``
checks that ``import datasets`` resolves here. It imports none of equizoo's other packages.
"""
