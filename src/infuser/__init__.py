"""infuser: influence-guided self-evolution of language models.

A Generator drafts questions from documents, a Solver learns to answer them by RL, and the
Generator is rewarded by how much a Solver update on each question would help on a target set.
"""

__version__ = "0.1.0"
