"""OlympiadBench: answer extraction and the union judge (official rules, then math-verify).

One concept per module, in the order an answer goes through them:
:mod:`~infuser.eval.olympiad.gold` (what is judged against, settings, verdicts),
:mod:`~infuser.eval.olympiad.cleanup` (LaTeX clean-up), :mod:`~infuser.eval.olympiad.structure`
(commas, equations, brackets), :mod:`~infuser.eval.olympiad.numbers` (exact numbers and the
tolerance rule), :mod:`~infuser.eval.olympiad.symbolic` (bounded sympy),
:mod:`~infuser.eval.olympiad.equality` (one item against one item),
:mod:`~infuser.eval.olympiad.official` (whole answers, one-to-one matching),
:mod:`~infuser.eval.olympiad.mathverify` (the math-verify stage) and
:mod:`~infuser.eval.olympiad.judge` (the union).

Nothing is imported here, so that loading rows does not load the judge.
"""
