"""`nodemesh agent` refusing to start, as users see it: a wrong flag is click's usage error, a
file or port the user must fix is one message and exit 1, never a traceback."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from nodemesh.agent.admin.http import HttpEndpoint
from nodemesh.errors import CannotListen, UserError


def _agent(cli, tmp_path, *flags: str):
    base = {"--node": "n1", "--controller-ca": str(tmp_path / "ca.pem"),
            "--token-file": str(tmp_path / "token"), "--cgroup": str(tmp_path),
            "--pod-netns-template": "/run/netns/{namespace}.{name}"}
    given = dict(zip(flags[::2], flags[1::2]))
    return cli("agent", *[arg for item in {**base, **given}.items() for arg in item])


def test_a_bad_netns_template_is_a_usage_error(cli, tmp_path):
    result = _agent(cli, tmp_path, "--pod-netns-template", "/run/netns/{pod}")
    assert result.returncode == 2
    assert "Invalid value for '--pod-netns-template': '/run/netns/{pod}': only {namespace}, {name} " \
           "and {uid} may appear in it" in result.stderr


def test_unreadable_credentials_are_one_message(cli, tmp_path):
    result = _agent(cli, tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"Error: {tmp_path / 'ca.pem'}: cannot read: No such file or directory\n"


def test_a_port_in_use_is_a_user_error_and_still_an_oserror():
    loop = asyncio.new_event_loop()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(CannotListen) as raised:
            HttpEndpoint("127.0.0.1", port, {}, loop)
    loop.close()
    assert isinstance(raised.value, UserError) and raised.value.errno == errno.EADDRINUSE
    assert str(raised.value) == (f"cannot listen on 127.0.0.1:{port}: Address already in use; is another "
                                 "agent running in this network namespace? choose another port with the flags")
