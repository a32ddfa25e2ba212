"""The base of errors caused by the user's input or config, reported without a traceback."""


class RecsysError(Exception):
    """Bad config, bad input or an unusable result; the message says what and where."""
