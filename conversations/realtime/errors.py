"""The base of every refusal to start a voice session (issuing.py and budget.py raise subclasses).

A module of its own so that budget.py can subclass it without importing issuing.py (which
imports budget.py)."""


class IssuingError(Exception):
    """A session was refused; str(error) is for the person who asked."""
