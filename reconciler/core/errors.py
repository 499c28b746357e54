"""Errors that stop a command before it does anything (exit status 2, one line on stderr).

Decision: defined apart from the modules that raise them, with nothing imported, so the
command line can catch them without loading the configuration machinery.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """The configuration cannot be used; ``str()`` says where and how to fix it."""
