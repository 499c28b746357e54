"""Names of an earlier flops_utils release that public FLOps repositories still import.

``from flops_utils.flops_learner_files_wrapper import load_ml_data`` (and ``load_dataset``)
appear in the history of public FLOps repositories; both are ``load_dataset`` of
``flops_utils.ml_repo_building_blocks``.
"""

from __future__ import annotations

from flops_utils.ml_repo_building_blocks import load_dataset

load_ml_data = load_dataset

__all__ = ["load_dataset", "load_ml_data"]
