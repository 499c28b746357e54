"""The wire contract between the reconciler and the builder: the request, the events, repairs.

Standard library only, imported by both sides (the builder image copies this package in), so
the contract is written once: ``events.py`` (the request file, event encoding and kinds),
``request.py`` (the typed request, its one parser and one serializer), ``repair.py``.
"""
