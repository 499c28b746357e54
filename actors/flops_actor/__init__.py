"""The programs inside the FL-actor images: ``python3 -m flops_actor.learner`` and
``python3 -m flops_actor.aggregator`` (DESIGN §9; ``actors/README.md`` has the contract), and
the trained-model image's ``python3 -m flops_actor.serve`` (DESIGN §10).

They import the ML repository from ``FLOPS_APP_DIR`` (default ``/app``) and nothing from
``reconciler``: the images carry ``actors/`` and the repository, not the reconciler.
"""
