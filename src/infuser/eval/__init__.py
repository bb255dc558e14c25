"""Bundled benchmark harnesses: OlympiadBench and SuperGPQA (``infuser eval``).

Modules: :mod:`~infuser.eval.sources` (raw records of local files and the Hub),
:mod:`~infuser.eval.data` (rows, their schema checks, loaders), :mod:`~infuser.eval.prompts`,
:mod:`~infuser.eval.items` (a benchmark entry's items: prompts, golds, exclusions),
:mod:`~infuser.eval.predictions` (a predictions file matched to the items),
:mod:`~infuser.eval.generation` (the model: loading and sampling),
:mod:`~infuser.eval.olympiad` (OlympiadBench answer extraction and judging; multiple-choice
extraction is :mod:`infuser.answers`), :mod:`~infuser.eval.limits` (time and size limits),
:mod:`~infuser.eval.score` (extraction + judging under the limits), :mod:`~infuser.eval.metrics`
(torchmetrics), :mod:`~infuser.eval.report` (results files), :mod:`~infuser.eval.target_set` and
:mod:`~infuser.eval.run` (the ``infuser eval`` entry point, :func:`infuser.eval.run.evaluate`), and
:mod:`~infuser.eval.during_fit` (the same harness on the live Solver, ``loop.eval_benchmarks``).

Nothing is imported here so that judge worker processes start quickly.
"""
