"""What the OAuth tests share (tests/test_oauth.py, tests/security/test_oauth_confinement.py):
a session for the tests' provider, a device login a person approves, and a cell run while
a person acts on the panel it shows (read from its widgets, as the page would show it)."""

from __future__ import annotations

import re
import threading
from typing import Any

from session_magics.oauth import OAuthSession, OAuthSettings
from session_magics.profile import Profile
from session_magics.store import MemoryStore
from tests.idp.person import Person

#: The environment variable the tests put the client secret of "robot" in.
SECRET_ENV = "SM_TEST_CLIENT_SECRET"


def session_for(idp, api, flow, store=None, **settings):
    """An :class:`OAuthSession` for ``api`` with the ``flow`` at ``idp``: the public client
    "notebook" (scopes openid, profile), or for ``client`` the confidential "robot" whose
    secret is in $SECRET_ENV. ``settings`` override any :class:`OAuthSettings` field."""
    defaults: dict[str, Any] = {"issuer": idp.issuer, "client_id": "notebook", "scope": "openid profile"}
    if flow == "client":
        defaults.update(client_id="robot", client_secret_env=SECRET_ENV, scope="read")
    oauth = OAuthSettings(flow=flow, **{**defaults, **settings})
    profile = Profile(name="p", base_url=api.url, oauth=oauth)
    return OAuthSession(profile, store or MemoryStore())


def device_login(session, person="ada"):
    """A device login of ``session`` that ``person`` approves at the provider's pages."""
    login = session.device_login().begin()
    login.start_in_thread()
    Person(person).approve_device(login.link)
    assert login.wait(60), "the device login did not end"
    login.outcome(60)
    return login


def panel_link(shell, start, kind):
    """The link a person sees in the panel displayed since ``start`` (read from its widgets)."""
    from ipywidgets.widgets.widget import _instances

    for data in shell.displayed[start:]:
        view = data.get("application/vnd.jupyter.widget-view+json") if isinstance(data, dict) else None
        if not view or view["model_id"] not in _instances:  # none, or a finished panel (closed)
            continue
        stack = [_instances[view["model_id"]]]
        while stack:
            widget = stack.pop()
            stack.extend(getattr(widget, "children", ()))
            value = getattr(widget, "value", "")
            if isinstance(value, str) and kind in value:
                match = re.search(r'href="([^"]+)"', value)
                if match:
                    import html

                    return html.unescape(match.group(1))
    return None


def in_cell_with_person(shell, source, act, kind):
    """Run ``source``; once its panel shows a link, ``act(link)`` does the person's part."""
    start = len(shell.displayed)
    done = threading.Event()

    def person():
        link = panel_link(shell, start, kind)
        while link is None and not done.wait(0.02):  # until the panel shows it, or the cell ended
            link = panel_link(shell, start, kind)
        if link:
            act(link)

    t = threading.Thread(target=person, daemon=True)
    t.start()
    try:
        return shell.run(source)
    finally:
        done.set()
        t.join(30)
