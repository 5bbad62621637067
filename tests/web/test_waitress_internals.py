"""web/serving.py relies on waitress internals (WAITRESS_INTERNALS): each must still exist in the
installed waitress, callables with the parameters it calls them with, attributes on real
instances. A waitress release that moves one fails here, by name, before anything misbehaves."""

from __future__ import annotations

import inspect
import socket
from types import SimpleNamespace
from typing import Any

import pytest
import waitress
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, MultiSocketServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from waitress.utilities import Error

from web import serving
from web.serving import WAITRESS_INTERNALS, Internal

ADVICE = (
    "web/serving.py (the one module that reaches into waitress) relies on {what}, which the "
    f"installed waitress {getattr(waitress, '__version__', '')} no longer has: adapt "
    "web/serving.py to it (see WAITRESS_INTERNALS there), or keep waitress at the version "
    "setup.cfg allows"
)


def _name(internal: Internal) -> str:
    owner = internal.owner
    return f"{getattr(owner, '__name__', owner)}.{internal.name}"


def _instances() -> dict[Any, Any]:
    """A real instance of every class whose instance attributes are relied on."""
    adj = Adjustments()
    ours, theirs = socket.socketpair()
    fake_server = SimpleNamespace(adj=adj, active_channels={})
    channel = HTTPChannel(fake_server, ours, ("peer", 0), adj, map={})
    parser = HTTPRequestParser(adj)
    parser.version = "1.1"
    listening = waitress.create_server(lambda environ, start: [], host="127.0.0.1", port=0,
                                       _start=False)
    multi = waitress.create_server(lambda environ, start: [], listen="127.0.0.1:0 127.0.0.1:0",
                                   _start=False)
    made = {
        ThreadedTaskDispatcher: ThreadedTaskDispatcher(),
        HTTPChannel: channel,
        HTTPRequestParser: parser,
        ErrorTask: ErrorTask(channel, parser),
        Error: Error("body"),
        Adjustments: Adjustments(host="127.0.0.1", port=0),
        BaseWSGIServer: listening,
        MultiSocketServer: multi,
        "close": [channel.close, theirs.close, listening.close, multi.close],
    }
    return made


@pytest.fixture(scope="module")
def instances() -> Any:
    made = _instances()
    yield made
    for close in made["close"]:
        close()


@pytest.mark.parametrize("internal", WAITRESS_INTERNALS, ids=_name)
def test_waitress_still_has_what_web_serving_relies_on(internal: Internal, instances: Any) -> None:
    what = _name(internal)
    if internal.instance:
        holder = instances[internal.owner]
        assert hasattr(holder, internal.name), ADVICE.format(what=f"the attribute {what}")
        return
    assert hasattr(internal.owner, internal.name), ADVICE.format(what=what)
    if internal.params is not None:
        found = tuple(inspect.signature(getattr(internal.owner, internal.name)).parameters)
        assert found[:len(internal.params)] == internal.params, ADVICE.format(
            what=f"{what}{internal.params} (it now takes {found})")


def test_every_waitress_name_web_serving_uses_is_declared() -> None:
    # Each waitress class web/serving.py imports has its relied-on members declared.
    declared = {internal.owner for internal in WAITRESS_INTERNALS}
    imported = {value for value in vars(serving).values()
                if getattr(value, "__module__", "").startswith("waitress")}
    assert imported <= declared | {waitress}, imported - declared


def test_the_check_fails_on_a_missing_internal() -> None:
    class Moved:
        def _flush_some_if_lockable(self, force: bool) -> None:  # a renamed parameter
            pass

    gone = Internal(Moved, "no_such_method")
    renamed = Internal(Moved, "_flush_some_if_lockable", ("self", "do_close"))
    with pytest.raises(AssertionError, match="web/serving.py"):
        test_waitress_still_has_what_web_serving_relies_on(gone, {})
    with pytest.raises(AssertionError, match=r"it now takes \('self', 'force'\)"):
        test_waitress_still_has_what_web_serving_relies_on(renamed, {})
