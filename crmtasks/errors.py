"""The root of every error crmtasks raises on purpose, and the settings error every process can meet.

``except CrmtasksError`` catches whatever crmtasks itself refuses or fails
at, and nothing else. Errors about bad input also derive from ``ValueError``
(a search filter of the wrong type, a setting with a bad value, a report
range that is not whole periods), as the API promised, so existing
``except ValueError`` handlers keep working. Each error class lives next to
the code that raises it; this module only holds what they share.
"""

from __future__ import annotations


class CrmtasksError(Exception):
    """Something crmtasks refused or could not do; the message says what, in one line."""


class SettingsError(CrmtasksError, ValueError):
    """A setting has a bad value.

    Parameters:
      variable(str): The environment variable at fault.
      problem(str): What is wrong with it, in words a user can act on.
    """

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem
