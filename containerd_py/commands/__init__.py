"""The client half of the command line: one module per group of verbs
(containers, images/networks/checkpoints/pools, system), registered into
one argparse tree whose `--help` lists them by group, as podman's does.

Exit codes follow podman: a command's own status where it runs one (`run`
in the foreground, `exec`), 125 when the daemon refused the request or
could not be reached.
"""

GROUPS = ("containers", "images", "networks", "checkpoints", "pools", "system")


class Registry:
    def __init__(self, sub):
        self.sub = sub
        self.entries: dict[str, list[tuple[str, str]]] = {g: [] for g in GROUPS}

    def add(self, group: str, name: str, help_text: str, func, aliases=(), offline=False):
        # No `help=`: argparse would list every verb in one flat block; the
        # grouped list goes in the top-level help's epilog instead.
        p = self.sub.add_parser(name, aliases=list(aliases), description=help_text)
        if func is not None:
            p.set_defaults(func=func, offline=offline)
        self.entries[group].append((name + "".join(f", {a}" for a in aliases), help_text))
        return p

    def names(self) -> list[str]:
        return [n.split(",")[0] for g in self.entries.values() for n, _ in g] + ["daemon"]

    def grouped_help(self) -> str:
        lines = []
        width = max(len(n) for g in self.entries.values() for n, _ in g) + 2
        for group in GROUPS:
            lines.append(f"{group}:")
            for name, text in self.entries[group]:
                lines.append(f"  {name.ljust(width)}{text}")
            lines.append("")
        lines.append("daemon:")
        lines.append(f"  {'daemon'.ljust(width)}run the daemon in the foreground "
                     "(containerd-py daemon --help)")
        return "\n".join(lines)


def register_all(sub) -> Registry:
    from . import containers, resources, system
    reg = Registry(sub)
    containers.register(reg)
    resources.register(reg)
    system.register(reg)
    return reg
