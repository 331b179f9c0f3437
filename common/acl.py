"""Turn ``redis.conf`` into a server config plus an ACL file that holds every role's password hash.

Why an ACL file: role users must be able to log in from the very first connection a (re)started server
accepts, and survive every restart, without any client racing an ``ACL SETUSER`` after start-up. Redis
refuses ``user`` lines in its config when an ``aclfile`` is set, so the ``user`` lines of ``redis.conf``
(the one readable place where the rules live) move into the ACL file, each completed with the SHA-256
of its password (``#<hex>``: no password in clear in any file, argument or listing).

Why the ``default`` user must stay ``off`` but keep its permissions: Redis 7.0 re-checks ACLs as the
``default`` user when it replays a ``MULTI``/``EXEC`` from the AOF (redis/redis#14541, fixed upstream by
#14545, not in Debian's 7.0.15). A ``default`` user without permissions makes every transaction in the
AOF fail with ``NOPERM`` at load time, so a restart silently loses every atomic publisher batch.
``off`` alone already keeps anyone from logging in as it (unauthenticated connections get ``NOAUTH``).
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from common.config import Role

ADMIN_RULES = "on ~* &* +@all"
DEFAULT_USER_RULES = "off resetpass ~* &* +@all"
"""What ``redis.conf`` must give the ``default`` user (see the module docstring)."""


class AclConfigError(ValueError):
    """``redis.conf`` would make an unsafe or broken ACL file; the message says which line and why."""


@dataclass(frozen=True, slots=True)
class SplitConfig:
    """``redis.conf`` without its ``user`` lines, and those lines as ``name -> rules``, in file order."""

    server: str
    users: dict[str, str]


def split_config(text: str) -> SplitConfig:
    """Separate ``user`` lines (to the ACL file) from everything else (stays server config)."""
    server: list[str] = []
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split(maxsplit=2)
        if not words or words[0].lower() != "user":
            server.append(line)
            continue
        if len(words) < 2:
            raise AclConfigError(f"redis.conf line {number}: a user line needs a name")
        if words[1] in users:
            raise AclConfigError(f"redis.conf line {number}: user {words[1]!r} is defined twice")
        users[words[1]] = words[2] if len(words) > 2 else ""
    if "aclfile" in (line.split(maxsplit=1)[0].lower() for line in server if line.strip()):
        raise AclConfigError("redis.conf sets aclfile itself; triarb writes the ACL file (remove that line)")
    return SplitConfig("\n".join(server) + "\n", users)


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def render_acl_file(users: Mapping[str, str], passwords: Mapping[Role, str]) -> str:
    """The ACL file: the ``default`` user as ``redis.conf`` has it (checked), every role user with its
    password hash appended, and the ``admin`` user (all rights) with its hash.

    A role without a password is written as is: it cannot log in, which is what an unset role means.
    """
    default = users.get("default")
    if default is None or default.split() != DEFAULT_USER_RULES.split():
        raise AclConfigError(
            f"redis.conf must define `user default {DEFAULT_USER_RULES}`: off so nobody logs in without a "
            "user name, with permissions so Redis 7.0 can replay transactions from the AOF (see common/acl.py)"
        )
    if Role.ADMIN.value in users:
        raise AclConfigError("redis.conf must not define the admin user: the launcher adds it with a password")
    lines = [f"user default {default}"]
    for name, rules in users.items():
        if name == "default":
            continue
        if any(word.startswith((">", "#", "<", "!")) or word == "nopass" for word in shlex.split(rules)):
            raise AclConfigError(f"redis.conf user {name!r}: passwords come from the launcher, not the file")
        password = passwords.get(Role(name)) if name in Role._value2member_map_ else None
        lines.append(f"user {name} {rules}" + (f" #{password_hash(password)}" if password else ""))
    lines.append(f"user {Role.ADMIN.value} {ADMIN_RULES} #{password_hash(passwords[Role.ADMIN])}")
    return "\n".join(lines) + "\n"


def render_config(conf_text: str, passwords: Mapping[Role, str]) -> tuple[str, str]:
    """``redis.conf`` text → (server config without ``user`` lines, ACL file text)."""
    split = split_config(conf_text)
    return split.server, render_acl_file(split.users, passwords)
