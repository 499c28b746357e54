"""Tools for people working on the reconciler itself (not used by the reconciler at run time)."""
