"""Errors whose message is meant for a person: the member who caused them, or an operator."""


class UserError(Exception):
    """Bad input or a refused action: shown privately to the user, never logged as a bug."""


class OperatorError(Exception):
    """A failure of a `pledgebot` command, reported in one line with no traceback."""


class StoreError(Exception):
    """A store problem worth showing to an operator (bad path, newer schema, ...)."""
