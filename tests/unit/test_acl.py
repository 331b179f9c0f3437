"""redis.conf's user lines become an ACL file with password hashes; unsafe user lines are refused."""

from __future__ import annotations

import hashlib

import pytest

from common.acl import DEFAULT_USER_RULES, AclConfigError, render_acl_file, split_config
from common.config import Role
from common.redis import repo_redis_conf

PASSWORDS = {role: f"pw-{role.value}" for role in Role}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_user_lines_leave_the_server_config_and_everything_else_stays() -> None:
    split = split_config("port 1\nuser default off\n# comment\nuser producer on +xadd\nappendonly yes\n")
    assert split.server == "port 1\n# comment\nappendonly yes\n"
    assert split.users == {"default": "off", "producer": "on +xadd"}


def test_every_role_gets_its_password_hash_and_admin_is_added() -> None:
    acl = render_acl_file({"default": DEFAULT_USER_RULES, "producer": "on resetpass -@all +xadd"}, PASSWORDS)
    lines = acl.splitlines()
    assert lines[0] == f"user default {DEFAULT_USER_RULES}"
    assert lines[1] == f"user producer on resetpass -@all +xadd #{sha('pw-producer')}"
    assert lines[2] == f"user admin on ~* &* +@all #{sha('pw-admin')}"
    assert "pw-" not in acl  # hashes only, never a password in clear


def test_the_repo_config_renders_every_role_with_a_password() -> None:
    split = split_config(repo_redis_conf().read_text())
    acl = render_acl_file(split.users, PASSWORDS)
    for role in Role:
        assert f"user {role.value} " in acl and f"#{sha(f'pw-{role.value}')}" in acl
    assert not [line for line in split.server.splitlines() if line.startswith("user")]  # none left for the server


@pytest.mark.parametrize("default", ["off resetpass resetkeys resetchannels -@all", "on nopass ~* +@all", None])
def test_a_default_user_other_than_off_with_permissions_is_refused(default: str | None) -> None:
    users = {"producer": "on +xadd"} | ({"default": default} if default else {})
    with pytest.raises(AclConfigError, match="must define `user default off"):
        render_acl_file(users, PASSWORDS)


@pytest.mark.parametrize("rules", ["on nopass +@all", "on >secret +@all", "on #abc +@all"])
def test_passwords_in_the_config_file_are_refused(rules: str) -> None:
    with pytest.raises(AclConfigError, match="passwords come from the launcher"):
        render_acl_file({"default": DEFAULT_USER_RULES, "producer": rules}, PASSWORDS)


def test_admin_in_the_config_file_and_an_aclfile_directive_are_refused() -> None:
    with pytest.raises(AclConfigError, match="must not define the admin user"):
        render_acl_file({"default": DEFAULT_USER_RULES, "admin": "on +@all"}, PASSWORDS)
    with pytest.raises(AclConfigError, match="sets aclfile itself"):
        split_config("aclfile /etc/redis/users.acl\n")
