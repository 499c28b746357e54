"""The image-builder program: runs inside the one-shot builder container (DESIGN §1 stage 3, §7).

Standard library plus PyYAML only, and nothing from the rest of `reconciler`: the builder image
carries just `reconciler/__init__.py`, this package and PyYAML's pure-Python package.
"""
