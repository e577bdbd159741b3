"""Problems the browser check finds in the current notebooks whose fix lies in a file the browser check's owner
does not own: ``{notebook: {needle: reason}}``, one place for the coordinator to edit.

A notebook whose every problem contains one of its needles is reported as an expected failure (xfail) with the
reasons; any other problem fails the test. When none of a notebook's needles matches any more (the fix is
merged), the test fails and asks for the entry to be removed.
"""

KNOWN_PROBLEMS: dict[str, dict[str, str]] = {}
