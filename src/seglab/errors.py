"""User-facing errors: one line that names the file or option and says what to do."""


class SeglabError(Exception):
    """A problem with the user's input (paths, files, config values, model specs).

    The CLI prints ``str(err)`` on one line and exits with code 2, without a traceback.
    Raise it with a message that names the offending file or option and, where possible, the fix.
    """

    exit_code = 2


class Interrupted(SeglabError):
    """The user stopped a run (Ctrl-C); what was saved can be resumed."""

    exit_code = 130
