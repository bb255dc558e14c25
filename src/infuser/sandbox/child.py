"""The first code that runs inside the sandbox: it confines its own process, then runs the program.

This file is not imported by the program's process: its text is handed to ``python -I -S -c`` by
:mod:`infuser.sandbox.local`, so it uses the standard library only and never imports ``infuser``
(the trainer's packages are not even visible inside); the parent imports it as a module only
for its constants. The job (program, tests, limits, the report pipe's number and nonce) comes on
``stdin``, ``marshal``-ed (``json`` would cost the start-up more than everything else together),
and ``stdin`` is ``/dev/null`` before the program runs.

In this order, before one line of the program runs:

1. ``root`` (the ``unshare`` level): fork into the fresh PID namespace as its PID 1 (the parent
   waits and exits as the child did), then, inside the user, mount and network namespaces that
   ``unshare`` made, build a new root on a tmpfs holding read-only binds of the system
   directories and the interpreter's prefix, a few device nodes, a fresh ``/proc``, and tmpfs
   ``/tmp`` and ``/sandbox`` (the working directory); ``pivot_root`` into it and detach the old root, so
   the trainer's files (``/work``, ``/root``, ``/home``, the host's ``/tmp``) do not exist in
   there. (The ``bwrap`` level gets the same from bubblewrap; the ``plain`` level has none.)
2. Resource limits, soft = hard so they cannot be raised again: CPU seconds, address space,
   file size, open files, no core files, and ``RLIMIT_NPROC`` 0 (no new process or thread).
3. Not dumpable, no new privileges (no set-uid program can raise them), every capability dropped
   (also from the bounding and ambient sets), so a program run as root keeps the limits.
4. A seccomp filter (x86-64 and AArch64), the same at every level: ``fork``/``clone``/``exec``
   (no new process, no other program), sockets (no network, no host Unix socket), ``ptrace`` and
   the cross-process memory calls, signals to any process but itself, mounts and namespaces,
   the kernel keyring, ``bpf``, ``perf_event_open``, ``userfaultfd`` and io_uring (whose
   operations would bypass the filter) fail with ``EPERM``; syscalls of another ABI (x32,
   i386) fail altogether.

Then the program runs in this interpreter: as ``__main__`` (``run``), or (``run_tests``) as the
module ``candidate`` followed by each test in a copy of its globals, each test's outcome written
to the report pipe as ``nonce <TAB> index <TAB> 1|0 <TAB> reason``; when it returns, the
interpreter leaves without its shutdown (:func:`_leave`). The nonce keeps a program's
own writes to that pipe from counting; a program that digs the nonce out of this interpreter's
memory could forge a report, but not escape the confinement above.
"""

import marshal
import os
import sys

MEMORY_EXIT = 97
"""Exit status when the program ran out of its address space (``MemoryError``)."""
SETUP_EXIT = 98
"""Exit status when the sandbox itself could not be set up (the program did not run)."""
SETUP_PREFIX = "infuser-sandbox: setup failed: "
PROGRAM_FILE = "program.py"
"""The program's copy in its working directory (so that tracebacks show its lines)."""
TEST_MODULE = "candidate"
"""``__name__`` of a program run under tests (so its ``if __name__ == "__main__":`` block does not run)."""

# -- syscalls ---------------------------------------------------------------------------------------

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
# Denied outright (EPERM): new processes and programs, sockets, tracing and other processes'
# memory, mounts and namespaces, the keyring, bpf/perf/userfaultfd, io_uring, pidfds.
_DENIED = {
    "x86_64": (57, 58, 56, 435, 59, 322, 41, 101, 310, 311, 165, 166, 155, 161, 272, 308, 428, 429, 430, 431, 432,
               433, 442, 248, 249, 250, 321, 298, 323, 425, 426, 427, 424, 434, 438),
    "aarch64": (220, 435, 221, 281, 198, 117, 270, 271, 40, 39, 41, 51, 97, 268, 428, 429, 430, 431, 432, 433, 442,
                217, 218, 219, 280, 241, 282, 425, 426, 427, 424, 434, 438),
}
# Allowed only towards the process itself (first argument: its own pid; not 0, its process group,
# which holds the sandbox's own wrapper): kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo.
_SELF_ONLY = {"x86_64": (62, 200, 234, 129, 297), "aarch64": (129, 130, 131, 138, 240)}
SECCOMP_ARCHES = tuple(_AUDIT_ARCH)

_EPERM = 1
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000 | _EPERM
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (the low half of args[0] on little-endian)


def seccomp_program(arch: str, pid: int) -> list:
    """The filter as ``(code, jt, jf, k)`` instructions (classic BPF)."""
    program = [(_LD_ABS, 0, 0, _ARCH), (_JEQ, 1, 0, _AUDIT_ARCH[arch]), (_RET, 0, 0, _RET_ERRNO), (_LD_ABS, 0, 0, _NR)]
    if arch == "x86_64":  # the x32 ABI shares the architecture number: its syscalls have bit 30 set
        program += [(_JGE, 0, 1, 0x40000000), (_RET, 0, 0, _RET_ERRNO)]
    for number in _DENIED[arch]:
        program += [(_JEQ, 0, 1, number), (_RET, 0, 0, _RET_ERRNO)]
    for number in _SELF_ONLY[arch]:
        program += [
            (_JEQ, 0, 4, number),  # not this syscall: on to the next check
            (_LD_ABS, 0, 0, _ARG0),
            (_JEQ, 1, 0, pid),  # itself: allow
            (_RET, 0, 0, _RET_ERRNO),
            (_RET, 0, 0, _RET_ALLOW),
        ]
    return program + [(_RET, 0, 0, _RET_ALLOW)]


# -- libc -------------------------------------------------------------------------------------------

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME = 1024, 2048, 1 << 21
_MNT_DETACH = 2
# statvfs flag -> the mount flag a remount must keep (a mount made outside the namespace is locked)
_KEPT_FLAGS = ((4, _MS_NODEV), (8, _MS_NOEXEC), (1024, _MS_NOATIME), (2048, _MS_NODIRATIME), (4096, _MS_RELATIME))
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_SECCOMP, _PR_CAPBSET_DROP = 1, 4, 22, 24
_PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, _SECCOMP_MODE_FILTER = 38, 47, 4, 2
_CAPABILITY_VERSION_3 = 0x20080522


class _Libc:
    """The few libc calls the standard library lacks (mount, pivot_root, prctl, capset)."""

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        self.libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

    def check(self, result: int, what: str) -> None:
        if result != 0:
            error = self.ctypes.get_errno()
            raise OSError(error, f"{what}: {os.strerror(error)}")

    def mount(self, source, target, fstype, flags: int, data=None) -> None:
        encoded = [None if v is None else v.encode() for v in (source, target, fstype, data)]
        self.check(self.libc.mount(encoded[0], encoded[1], encoded[2], flags, encoded[3]), f"mount {target}")

    def prctl(self, option: int, a: int = 0, b: int = 0) -> int:
        return self.libc.prctl(option, a, b, 0, 0)

    def syscall(self, number: int, *args) -> int:
        return self.libc.syscall(number, *args)


# -- the new root (unshare level) ---------------------------------------------------------------------


def _bind(libc: _Libc, source: str, target: str, readonly: bool) -> None:
    """Bind ``source`` (without the mounts below it) at ``target``, then remount it nosuid and, if
    asked, read-only; the flags of the mount it came from are kept (they are locked)."""
    libc.mount(source, target, None, _MS_BIND)
    kept = 0
    flags = os.statvfs(target).f_flag
    for statvfs_flag, mount_flag in _KEPT_FLAGS:
        if flags & statvfs_flag:
            kept |= mount_flag
    libc.mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_NOSUID | kept | (_MS_RDONLY if readonly else 0))


def _mount_point(path: str, directory: bool) -> None:
    if directory:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a"):
            pass


def build_root(libc: _Libc, spec: dict, arch: str) -> None:
    """Make the new root described by ``spec`` and move into it (see the module docstring)."""
    root = spec["root"]
    libc.mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    libc.mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=1m")
    for path in spec["readonly"]:
        _mount_point(root + path, os.path.isdir(path))
        _bind(libc, path, root + path, readonly=True)
    for link, destination in spec["symlinks"].items():
        os.symlink(destination, root + link)
    os.makedirs(root + "/dev")
    for device in ("null", "zero", "full", "random", "urandom"):
        _mount_point(f"{root}/dev/{device}", directory=False)
        _bind(libc, f"/dev/{device}", f"{root}/dev/{device}", readonly=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    os.makedirs(root + "/proc")
    libc.mount("proc", root + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    os.makedirs(root + "/tmp")
    libc.mount("tmpfs", root + "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"mode=1777,size={spec['tmp_mb']}m")
    os.makedirs(root + spec["inside"])
    libc.mount("tmpfs", root + spec["inside"], "tmpfs", _MS_NOSUID | _MS_NODEV, f"mode=0777,size={spec['tmp_mb']}m")
    os.chdir(root)
    libc.check(libc.syscall(_PIVOT_ROOT[arch], b".", b"."), "pivot_root")
    libc.check(libc.libc.umount2(b".", _MNT_DETACH), "umount of the old root")
    os.chdir(spec["inside"])
    libc.mount(None, "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


# -- limits, privileges, the filter ---------------------------------------------------------------------


def confine(libc: _Libc, limits: dict, arch) -> None:
    """Resource limits, no privileges, the seccomp filter (``arch`` ``None``: no filter)."""
    import resource

    for name, (soft, hard) in limits.items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    libc.prctl(_PR_SET_DUMPABLE, 0)
    libc.check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
    for capability in range(64):  # EINVAL past the last capability; EPERM when we hold none
        if libc.prctl(_PR_CAPBSET_DROP, capability) != 0 and libc.ctypes.get_errno() == 22:
            break
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    ctypes = libc.ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc.check(libc.libc.capset(ctypes.byref(Header(_CAPABILITY_VERSION_3, 0)), (Data * 2)()), "capset")
    if arch is None:
        return

    class Instruction(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    instructions = seccomp_program(arch, os.getpid())
    table = (Instruction * len(instructions))(*[Instruction(*i) for i in instructions])
    program = Program(len(instructions), table)
    address = ctypes.cast(ctypes.pointer(program), ctypes.c_void_p).value
    libc.check(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, address), "seccomp")


# -- running the program ---------------------------------------------------------------------------------


def _reason(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return " ".join(text.split())[:300]


def run_tests(program: str, tests: list, entry_point, nonce: str, report_fd: int) -> int:
    """Run ``program`` as the module ``candidate``, then each test in a copy of its globals; a test
    passes when it raises nothing (and, with ``entry_point``, its ``check`` returns on it)."""
    import builtins

    def report(index: int, passed: bool, reason: str) -> None:
        line = f"{nonce}\t{index}\t{int(passed)}\t{reason}\n"
        try:
            os.write(report_fd, line.encode("utf-8", "replace"))
        except OSError:
            pass  # the program closed the pipe: its tests count as not run

    namespace = {"__name__": TEST_MODULE, "__builtins__": builtins}
    try:
        exec(compile(program, PROGRAM_FILE, "exec"), namespace)
    except MemoryError:
        raise
    except BaseException as error:  # SystemExit included: a program that exits passes no test
        for index in range(len(tests)):
            report(index, False, f"program: {_reason(error)}")
        return 1
    all_passed = True
    for index, test in enumerate(tests):
        scope = dict(namespace)
        try:
            exec(compile(test, f"<test {index}>", "exec"), scope)
            if entry_point is not None:
                if entry_point not in namespace:
                    raise NameError(f"the program does not define {entry_point!r}")
                check = scope.get("check")
                if callable(check) and check is not namespace.get("check"):
                    check(namespace[entry_point])
        except MemoryError:
            raise
        except BaseException as error:
            all_passed = False
            report(index, False, _reason(error))
            continue
        report(index, True, "")
    return 0 if all_passed else 1


def become_pid_one(libc: _Libc) -> None:
    """Fork: the child goes on as PID 1 of the new PID namespace (``unshare --pid`` puts only the
    children of its command in there); this process waits for it and exits as it did, with 128 + n
    when it was killed by signal n (as bwrap reports it). The child dies with this process."""
    pid = os.fork()
    if pid == 0:
        libc.prctl(_PR_SET_PDEATHSIG, 9)
        return
    _, status = os.waitpid(pid, 0)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def _leave(status: int) -> None:
    """Exit once the program has returned, without the interpreter's shutdown (about 10 ms of
    every run): ``stdout`` and ``stderr`` are flushed; ``atexit`` handlers and finalizers do not
    run (``sys.exit`` in the program takes the ordinary way out)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def main() -> None:
    job = marshal.loads(sys.stdin.buffer.read())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # the program reads nothing
    os.close(null)
    program = job["program"]
    try:
        libc = _Libc()
        if job["root"] is not None:
            become_pid_one(libc)
            build_root(libc, job["root"], job["arch"])
        with open(PROGRAM_FILE, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(program)  # for the lines of tracebacks
        confine(libc, job["limits"], job["arch"] if job["seccomp"] else None)
    except Exception as error:
        sys.stderr.write(f"{SETUP_PREFIX}{type(error).__name__}: {error}\n")
        sys.stderr.flush()
        os._exit(SETUP_EXIT)
    try:
        if job["tests"] is not None:
            _leave(run_tests(program, job["tests"], job["entry_point"], job["nonce"], job["report_fd"]))
        exec(compile(program, PROGRAM_FILE, "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        _leave(0)
    except MemoryError:
        sys.stderr.write("MemoryError\n")
        sys.stderr.flush()
        os._exit(MEMORY_EXIT)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as error:  # the program's traceback, without this file's frames
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        sys.exit(1)


if __name__ == "__main__":
    main()
