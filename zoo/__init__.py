"""Models assembled from ``layers``: ``build_model(name, **kwargs)``, pretrained weights, the ASE
calculator and the safe checkpoint format. Imports ``layers`` and the schema of ``datasets``; never
``train``.
"""
