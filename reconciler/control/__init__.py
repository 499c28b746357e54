"""The control layer: the controller's passes, the build runner's followers, the record book.

Everything here is imperative shell around ``core`` (plans, transitions, event translation):
it reads the world through a ``Workspace`` (``reconciler/workspace.py``) and changes the
records and observer logs only through the ``RecordBook``.
"""
