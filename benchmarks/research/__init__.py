"""Research measurements: what a world or a method does, not how fast or lean the code is.

``python -m benchmarks.research.rules_world``: the rule world's base pass rates, overlaps and a
proxy of the curriculum benchmark's headroom gate (docs/benchmarks.md, "Rule world").
"""
