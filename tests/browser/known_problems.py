"""Problems the browser check finds in the current notebooks whose fix lies in a file the browser check's owner
does not own: ``{notebook: {needle: reason}}``, one place for the coordinator to edit.

A notebook whose every problem contains one of its needles is reported as an expected failure (xfail) with the
reasons; any other problem fails the test. When none of a notebook's needles matches any more (the fix is
merged), the test fails and asks for the entry to be removed.
"""

_SWEEP = ("labkit/batchsize/sweep.py builds the steps-to-target figures (sweep.figure(), nqm_sweep.figure(), the NQM "
          "explorer's figure) with a log x-axis running to 10^20-10^160 and the regime labels on top of one another "
          "(issue 21; being fixed by lessons-b)")

KNOWN_PROBLEMS: dict[str, dict[str, str]] = {
    "04_batch_size.ipynb": {
        "x-axis 'batch size B' (log) shows": _SWEEP,
        "annotation 'perfect scaling' overlaps annotation 'diminishing returns'": _SWEEP,
        "annotation 'diminishing returns' overlaps annotation 'B_crit'": _SWEEP,
    },
}
