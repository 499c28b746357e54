"""The image-builder program: runs inside the one-shot builder container (DESIGN §1 stage 3, §7).

Standard library plus PyYAML only, and nothing from the rest of `reconciler` but the wire
contract (`reconciler.protocol`): the builder image carries just `reconciler/__init__.py`,
`reconciler/protocol/`, this package and PyYAML's pure-Python package.
"""
