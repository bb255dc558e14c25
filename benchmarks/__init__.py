"""infuser's engineering benchmarks: speed, memory and fidelity measurements of the code itself.

Each module is a command, run from the repository root as ``python -m benchmarks.NAME --help``;
they share code as modules of this package (``benchmarks.model_shapes``: the models' shapes and
random-weight checkpoints; ``benchmarks.memory_estimate``: the memory a run needs), never by
putting this folder on ``sys.path``. Measurements of a world rather than of the code live in
:mod:`benchmarks.research`; the benchmarks a user runs on their own setup are ``infuser bench``
(:mod:`infuser.bench`). docs/benchmarks.md has the results.
"""
