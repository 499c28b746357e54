"""flops-reconciler: make every FL project's learner and aggregator images exist.

This file stays free of imports: the builder image copies it next to `reconciler/builder/`,
which must run with the standard library (plus PyYAML) alone.
"""

__version__ = "0.1.0"
