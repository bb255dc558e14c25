"""Benchmarks run as ``infuser bench NAME`` (entry-point group ``infuser.benchmark``): ``influence``
(how faithfully and cheaply each estimator predicts a real Solver step) and ``curriculum`` (arms of
the loop against each other over seeds). Shared helpers live in :mod:`infuser.bench.common`."""
