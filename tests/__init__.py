"""The test suite (``make test``). Timing rule: a test may bound how long something takes (a hang must end), never
expect it to be fast; a loaded 2-core machine stretches seconds to minutes. pytest-timeout bounds every test
(``pyproject.toml``); a child process or a wait inside a test gets :data:`CHILD_BOUND_S`."""

#: Seconds a subprocess or a wait inside a test may take before it counts as hung: a bound, not an expectation.
CHILD_BOUND_S = 900
#: pytest-timeout for a module that runs the whole local flow, synthesizes every stack or runs the pipeline (the
#: default, ``timeout`` in pyproject.toml, bounds the others).
HEAVY_TIMEOUT_S = 1800
