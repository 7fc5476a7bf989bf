"""Cell sources for a stand-in login form that exercises session_magics.waiting.

The form is built like the real one (a VBox with the CSS class
``session-magics-login``: user Text, Password, "Log in" and "Cancel" buttons, an
HTML message line). Its cell prints ``RESULT <ok|cancel|None> LEN <n> WAITED
<True|False>`` (the password's length, never the password).
"""

from __future__ import annotations

FORM_SETUP = """\
import ipywidgets as w
from IPython.display import display
from session_magics import waiting

def toy_form():
    state = {"clicked": None, "password": ""}
    user = w.Text(description="User")
    # The typed password leaves the widget as soon as it reaches the kernel
    # (on Enter or when the field loses focus), so saved widget state never holds it.
    password = w.Password(description="Password", continuous_update=False)
    ok = w.Button(description="Log in")
    cancel = w.Button(description="Cancel")
    message = w.HTML("Session expired: log in again")
    box = w.VBox([user, password, w.HBox([ok, cancel]), message])
    box.add_class("session-magics-login")

    def on_password(change):
        if change["new"]:
            state["password"] = change["new"]
            password.value = ""
            message.value = "Password received: click Log in"

    def on_ok(_):
        state["clicked"] = "ok"

    def on_cancel(_):
        state["password"] = ""
        state["clicked"] = "cancel"

    password.observe(on_password, names="value")
    ok.on_click(on_ok)
    cancel.on_click(on_cancel)
    display(box)
    return state, (lambda: state["clicked"] is not None)

def report(state, waited):
    print("RESULT", state["clicked"], "LEN", len(state["password"]), "WAITED", waited)
"""

SYNC_WAIT = """\
print("FRONTEND", waiting.frontend())
state, done = toy_form()
report(state, waiting.wait_for(done, {timeout}))
"""

ASYNC_WAIT = """\
print("FRONTEND", waiting.frontend())
state, done = toy_form()
report(state, await waiting.wait_for_async(done, {timeout}))
"""

# A sync wait from inside a function, the place the transformer never rewrites.
SYNC_IN_FUNCTION = """\
def ask():
    state, done = toy_form()
    try:
        waited = waiting.wait_for(done, {timeout})
    except waiting.CannotWaitHere as exc:
        print("CANNOT WAIT", exc)
        return
    report(state, waited)
ask()
"""

# A line magic whose async runner is called by rewritten cells.
MAGIC_SETUP = """\
from IPython.core.magic import register_line_magic

@register_line_magic
def toylogin(line):
    state, done = toy_form()
    report(state, waiting.wait_for(done, 60))
    return state["clicked"]

async def toy_run_async(kind, name, line, cell):
    state, done = toy_form()
    report(state, await waiting.wait_for_async(done, 60))
    return state["clicked"]

print("INSTALLED", waiting.install_transformer(get_ipython(), {{"toylogin"}}, "toy_run_async", force={force}))
print("PREFERRED", waiting.preferred_wait(), "STYLE", waiting.kernel_wait_style())
"""

MAGIC_CALL = """\
answer = %toylogin
print("ANSWER", answer)
"""

NEXT = 'print("NEXT RAN")'

# How many kernel subshells the frontend created (ipykernel 7 only).
SUBSHELLS = """\
_manager = get_ipython().kernel.shell_channel_thread.manager
print("SUBSHELLS", len(_manager.list_subshell()))
"""
