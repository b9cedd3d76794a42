"""Errors whose message is meant for the member who caused them."""


class UserError(Exception):
    """Bad input or a refused action: shown privately to the user, never logged as a bug."""


class OperatorError(Exception):
    """A failure of a `pledgebot` command, reported in one line with no traceback."""
