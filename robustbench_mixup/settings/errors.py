"""The one exception type that means "the user asked for something we cannot do".

The command line turns a `UsageError` into one line on stderr and exit status 2; anything else that
escapes is a bug (exit status 1). It subclasses `ValueError` so library callers who follow docs/API.md
("invalid arguments raise ValueError") need not know about it.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input or unusable data: the message says what is wrong and what is accepted."""
