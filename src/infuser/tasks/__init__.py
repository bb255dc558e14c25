"""Tasks: what the Generator drafts and the Solver answers (:mod:`infuser.tasks.base`)."""
