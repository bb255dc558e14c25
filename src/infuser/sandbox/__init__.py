"""Running untrusted code: the ``executor`` component kind and its default, the local sandbox.

Model-written code is executed only here, in a confined child process per program, never in the
trainer's process. Modules: :mod:`~infuser.sandbox.base` (the :class:`~infuser.sandbox.base.Executor`
interface and its results: ``Execution``, ``TestRun``), :mod:`~infuser.sandbox.isolation` (the
isolation levels ``bwrap``, ``unshare``, ``plain`` and their command lines),
:mod:`~infuser.sandbox.child` (the start-up code that confines the child before the program runs)
and :mod:`~infuser.sandbox.local` (:class:`~infuser.sandbox.local.LocalExecutor`, registered as
``local``). Nothing is imported here.
"""
