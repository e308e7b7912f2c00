"""The ``modelops`` command line (developer tooling; never shipped to Lambda)."""
