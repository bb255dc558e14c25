"""Reading answers out of model output, shared by the Solver's training reward and the eval harness.

:mod:`~infuser.answers.extraction` (the result type and the bounded tail every extractor reads),
:mod:`~infuser.answers.boxes` (``\\boxed{...}`` spans, braces matched) and
:mod:`~infuser.answers.choice` (the chosen letter of a multiple-choice answer). Plain string work,
linear in a bounded input, with no dependency on torch, sympy or the harness.
"""
