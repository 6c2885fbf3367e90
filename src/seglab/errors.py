"""User-facing errors: one line that names the file or option and says what to do."""


class SeglabError(Exception):
    """A problem with the user's input (paths, files, config values, model specs).

    The CLI prints ``str(err)`` on one line and exits with code 2, without a traceback.
    Raise it with a message that names the offending file or option and, where possible, the fix.
    """

    exit_code = 2


class BadValue(SeglabError):
    """A bad argument to a library function, named by that function's parameter (``tile``) and about the value
    alone. Called from Python it reads "tile=100: ..."; the CLI names its own option instead ("--tile")."""

    def __init__(self, param: str, value, problem: str):
        super().__init__(f"{param}={value!r}: {problem}")
        self.param, self.value, self.problem = param, value, problem


class Interrupted(SeglabError):
    """The user stopped a run (Ctrl-C); what was saved can be resumed."""

    exit_code = 130


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, or its type's name when the message is empty (a zero-byte
    checkpoint makes torch raise an error with no message at all)."""
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:limit]


def read_user_text(path) -> str:
    """A config, study, classes or annotation file the user wrote, as UTF-8 text (a byte-order mark, which
    Windows editors put first, dropped); anything else is one clear line."""
    from pathlib import Path

    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise SeglabError(f"{path}: not UTF-8 text (undecodable byte at position {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise SeglabError(f"{path}: cannot read it ({first_line(e)})") from None
