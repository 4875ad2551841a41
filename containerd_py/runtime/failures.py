"""Which failures of `runtime run` are the user's mistake (a 400) rather
than the runtime's (a 500): the runtime's own words, sorted in one place.

runc and crun check the process only when they start it, so a command that
is not in the image, a cwd that cannot be entered or empty args come back as
a failed start. Messages as runc 1.1 and crun 1.x print them.
"""

import re

from ..errors import DaemonError, InvalidArgument, RuntimeFailure

_USER_MISTAKES = [
    # runc: exec: "nosuch": executable file not found in $PATH
    #       exec: "/etc/passwd": permission denied
    #       exec: "/nosuch": stat /nosuch: no such file or directory
    (re.compile(r'exec: "[^"]*": '), "args"),
    # crun: executable file `nosuch` not found in $PATH; open executable: ...
    (re.compile(r"executable file `[^`]*` not found|open executable"), "args"),
    (re.compile(r"args must not be empty"), "args"),
    # runc: chdir to cwd ("/x") set in config.json failed: ...; crun: chdir to `/x`
    (re.compile(r"chdir to cwd|chdir to `|Cwd must be an absolute path"), "cwd"),
]
# runc logs as logfmt: time="..." level=error msg="runc run failed: ..."
_LOGFMT_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def classify(error: RuntimeFailure) -> DaemonError:
    """The error to raise for a failed start: an InvalidArgument with the
    runtime's own message when the request asked for something impossible,
    else `error` itself."""
    text = error.message.replace('\\"', '"')
    for pattern, field in _USER_MISTAKES:
        if pattern.search(text):
            return InvalidArgument(_readable(error.message), field=field,
                                   **{k: v for k, v in error.details.items()
                                      if k != "exitCode"})
    return error


def _readable(message: str) -> str:
    msgs = [m.replace('\\"', '"') for m in _LOGFMT_MSG.findall(message)]
    return " | ".join(msgs) if msgs else message
