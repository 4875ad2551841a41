"""Seccomp profiles of containers, in the OCI spec's `linux.seccomp` form.

The runtime default is an allow list with the semantics Docker and
containerd give theirs: every syscall a normal program needs is allowed,
anything else fails with EPERM, and the syscalls a capability guards are
allowed only to a container that has that capability (so that adding
CAP_SYS_ADMIN makes mount and sethostname work, and a container without it
cannot unshare or clone new namespaces even if the kernel would let an
unprivileged user do so). runc turns the list into a BPF filter through
libseccomp; names libseccomp does not know on this kernel are skipped.

A custom profile is a JSON file in the same OCI form (`defaultAction`,
`syscalls: [{names, action, args}]`), as containerd's CRI reads it.
"""

import json
import os
import platform

from ..errors import InvalidArgument

# The arches one filter covers: the native one and those whose binaries the
# kernel also runs (32-bit x86 and x32 on an x86_64 host).
_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}
# Syscalls that only exist on one of the arches of a filter.
_ARCH_SYSCALLS = {
    "x86_64": ["arch_prctl", "modify_ldt"],
    "aarch64": [],
}

EPERM, ENOSYS = 1, 38

# What any process may do, by area. Each name is the 64-bit one; the 32-bit
# spellings of the same call come from the rules below, not from the lists.
_FILES = """
    access faccessat faccessat2 chdir fchdir getcwd chmod fchmod fchmodat chown fchown
    fchownat lchown creat open openat openat2 close close_range dup dup2 dup3 fcntl flock
    fsync fdatasync sync syncfs sync_file_range fallocate ftruncate truncate lseek _llseek
    read write readv writev pread64 pwrite64 preadv preadv2 pwritev pwritev2 sendfile
    splice tee vmsplice copy_file_range readahead fadvise64 fadvise64_64 getdents
    getdents64 link linkat symlink symlinkat unlink unlinkat rename renameat renameat2
    mkdir mkdirat rmdir mknod mknodat readlink readlinkat stat fstat lstat newfstatat
    fstatat64 statx statfs fstatfs umask utime utimes utimensat futimesat getxattr lgetxattr
    fgetxattr listxattr llistxattr flistxattr setxattr lsetxattr fsetxattr removexattr
    lremovexattr fremovexattr inotify_init inotify_init1 inotify_add_watch inotify_rm_watch
    fanotify_mark ioctl io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents
    memfd_create
"""
_PROCESSES = """
    execve execveat exit exit_group fork vfork wait4 waitid waitpid kill tgkill tkill getpid
    getppid gettid getpgid setpgid getpgrp getsid setsid getpriority setpriority prctl capget
    capset getrlimit setrlimit ugetrlimit prlimit64 getrusage get_robust_list set_robust_list
    set_tid_address get_thread_area set_thread_area sched_getaffinity sched_setaffinity
    sched_getattr sched_setattr sched_getparam sched_setparam sched_getscheduler
    sched_setscheduler sched_get_priority_max sched_get_priority_min sched_rr_get_interval
    sched_yield seccomp rseq membarrier pidfd_open pidfd_send_signal ioprio_get ioprio_set
    restart_syscall times uname sysinfo getcpu getrandom
"""
_IDS = """
    getuid geteuid getgid getegid getgroups getresuid getresgid setuid setgid setgroups
    setreuid setregid setresuid setresgid setfsuid setfsgid
"""
_MEMORY = """
    brk mmap mmap2 munmap mprotect mremap madvise mincore msync mlock mlock2 mlockall munlock
    munlockall remap_file_pages pkey_alloc pkey_free pkey_mprotect
"""
_SIGNALS = """
    rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
    rt_sigtimedwait rt_tgsigqueueinfo sigaltstack sigprocmask sigreturn signalfd signalfd4
    pause alarm
"""
_TIME = """
    clock_getres clock_gettime clock_nanosleep nanosleep gettimeofday time getitimer
    setitimer timer_create timer_delete timer_getoverrun timer_gettime timer_settime
    timerfd_create timerfd_gettime timerfd_settime
"""
_WAITING = """
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
    epoll_wait_old eventfd eventfd2 poll ppoll select _newselect pselect6 pipe pipe2 futex
    futex_waitv
"""
_IPC = """
    ipc msgctl msgget msgrcv msgsnd semctl semget semop semtimedop shmat shmctl shmdt shmget
    mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedsend mq_unlink
"""
_NETWORK = """
    socket socketpair socketcall bind connect listen accept accept4 getpeername getsockname
    getsockopt setsockopt recv recvfrom recvmsg recvmmsg send sendto sendmsg sendmmsg shutdown
"""

# The 32-bit ABIs spell some calls differently: ids were 16-bit and got a
# "32" variant, file sizes a "64" one, and times a "_time64" one (y2038).
_WITH_32 = set(_IDS.split()) | {"chown", "fchown", "lchown"}
_WITH_64 = {"fcntl", "ftruncate", "truncate", "stat", "fstat", "lstat", "statfs", "fstatfs",
            "sendfile"}
_WITH_TIME64 = {"clock_getres", "clock_nanosleep", "futex", "io_pgetevents", "mq_timedreceive",
                "mq_timedsend", "ppoll", "pselect6", "recvmmsg", "rt_sigtimedwait",
                "sched_rr_get_interval", "semtimedop", "utimensat"}
# ...except where the kernel named the new call with a bare "64".
_WITH_64 |= {"clock_gettime", "timer_gettime", "timer_settime", "timerfd_gettime",
             "timerfd_settime"}

# What a capability guards: allowed only when the container has it.
BY_CAPABILITY = {
    "CAP_DAC_READ_SEARCH": ["open_by_handle_at"],
    "CAP_SYS_ADMIN": ["bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount",
                      "fsopen", "fspick", "lookup_dcookie", "mount", "mount_setattr",
                      "move_mount", "name_to_handle_at", "open_tree", "perf_event_open",
                      "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns",
                      "syslog", "umount", "umount2", "unshare"],
    "CAP_SYS_BOOT": ["reboot"],
    "CAP_SYS_CHROOT": ["chroot"],
    "CAP_SYS_MODULE": ["delete_module", "init_module", "finit_module"],
    "CAP_SYS_PACCT": ["acct"],
    "CAP_SYS_PTRACE": ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                       "process_vm_writev", "ptrace"],
    "CAP_SYS_RAWIO": ["iopl", "ioperm"],
    "CAP_SYS_TIME": ["settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex",
                     "clock_adjtime", "clock_adjtime64"],
    "CAP_SYS_TTY_CONFIG": ["vhangup"],
    "CAP_SYS_NICE": ["get_mempolicy", "mbind", "set_mempolicy"],
    "CAP_SYSLOG": ["syslog"],
    "CAP_BPF": ["bpf"],
    "CAP_PERFMON": ["perf_event_open"],
}

# clone's flags that make new namespaces: without CAP_SYS_ADMIN a clone is
# allowed only with none of them set (threads and forks, not containers).
_CLONE_NEW = (0x00020000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
              | 0x02000000)  # NEWNS UTS IPC USER PID NET CGROUP
# personality(2) values programs use: the default, UNAME26, ADDR_NO_RANDOMIZE
# (with and without UNAME26), and the query 0xffffffff.
_PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff]


def _variants(names: list[str]) -> list[str]:
    out = []
    for n in names:
        out.append(n)
        if n in _WITH_32:
            out.append(n + "32")
        if n in _WITH_64:
            out.append(n + "64")
        if n in _WITH_TIME64:
            out.append(n + "_time64")
    return out


def allowed_syscalls(arch: str | None = None) -> list[str]:
    """The names every container may call, whatever its capabilities."""
    arch = arch or platform.machine()
    names = []
    for group in (_FILES, _PROCESSES, _IDS, _MEMORY, _SIGNALS, _TIME, _WAITING, _IPC,
                  _NETWORK):
        names += group.split()
    names += _ARCH_SYSCALLS.get(arch, [])
    return sorted(set(_variants(names)))


def default_profile(capabilities: list[str], arch: str | None = None) -> dict:
    """The runtime default for a container whose bounding set is
    `capabilities` (names such as "CAP_SYS_ADMIN")."""
    arch = arch or platform.machine()
    caps = set(capabilities)
    rules = [{"names": allowed_syscalls(arch), "action": "SCMP_ACT_ALLOW"}]
    rules += [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}
              for v in _PERSONALITIES]
    granted = sorted({n for cap, names in BY_CAPABILITY.items() if cap in caps for n in names})
    if granted:
        rules.append({"names": granted, "action": "SCMP_ACT_ALLOW"})
    if "CAP_SYS_ADMIN" not in caps:
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": _CLONE_NEW, "valueTwo": 0,
                                "op": "SCMP_CMP_MASKED_EQ"}]})
        # clone3 passes its flags in memory a filter cannot read: ENOSYS
        # makes libc fall back to clone, whose flags the rule above sees.
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM,
            "architectures": _ARCHES.get(arch, []), "syscalls": rules}


_ACTIONS = {"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
            "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
            "SCMP_ACT_NOTIFY"}


def load_profile(path: str, field: str = "seccomp") -> dict:
    """A custom profile file (OCI form), checked enough that a bad one is
    the caller's error at create and not runc's at start."""
    if not os.path.isabs(path):
        raise InvalidArgument(f"seccomp profile {path!r}: the path must be absolute",
                              field=field)
    try:
        with open(path) as f:
            prof = json.load(f)
    except OSError as e:
        raise InvalidArgument(f"seccomp profile {path!r}: {e.strerror}", field=field) from None
    except ValueError as e:
        raise InvalidArgument(f"seccomp profile {path!r} is not JSON: {e}", field=field) from None
    if not isinstance(prof, dict) or prof.get("defaultAction") not in _ACTIONS:
        raise InvalidArgument(f"seccomp profile {path!r} has no valid defaultAction "
                              f"(one of {', '.join(sorted(_ACTIONS))})", field=field)
    for rule in prof.get("syscalls") or []:
        if not (isinstance(rule, dict) and isinstance(rule.get("names"), list)
                and rule.get("action") in _ACTIONS):
            raise InvalidArgument(f"seccomp profile {path!r}: each of syscalls needs names "
                                  f"(a list) and a valid action, not {rule!r}", field=field)
    return prof


def supported() -> bool:
    """Whether this kernel filters syscalls (it has a Seccomp: line)."""
    try:
        with open("/proc/self/status") as f:
            return any(ln.startswith("Seccomp:") for ln in f)
    except OSError:
        return False
