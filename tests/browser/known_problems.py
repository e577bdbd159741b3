"""Problems the browser check finds in the current notebooks whose fix lies in a file the browser check's owner
does not own: ``{notebook: {needle: reason}}``. A notebook whose every problem matches a needle here is
reported as an expected failure (xfail) with the reason; any other problem fails the test; a needle that no
longer matches anything fails too, so the entry is removed as soon as the fix is merged.
"""

KNOWN_PROBLEMS: dict[str, dict[str, str]] = {}
