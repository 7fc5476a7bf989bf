"""A person at the identity provider's own pages, done with HTTP form posts.

:class:`Person` opens a page the way a browser would (cookies kept, redirects
followed), reads its form (hidden fields included, as a browser submits them), fills
in what a person types (login name, password, user code) and presses the form's
button. Nothing here reaches into the provider: only its pages and forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import requests


@dataclass
class Form:
    action: str
    method: str = "get"
    fields: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)  # names of visible inputs, in order
    buttons: list[tuple[str | None, str | None, str]] = field(default_factory=list)  # (name, value, text)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._button: list[Any] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append(Form(action=a.get("action") or "", method=(a.get("method") or "get").lower()))
        elif tag == "input" and self.forms:
            name = a.get("name")
            if not name:
                return
            if a.get("type") == "hidden":
                self.forms[-1].fields[name] = a.get("value") or ""
            elif a.get("type") == "submit":
                self.forms[-1].buttons.append((name, a.get("value"), a.get("value") or ""))
            else:
                self.forms[-1].inputs.append(name)
                if a.get("value"):
                    self.forms[-1].fields[name] = a["value"] or ""
        elif tag == "button" and self.forms:
            self._button = [a.get("name"), a.get("value"), ""]

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button[2] += data
        self.text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None and self.forms:
            self.forms[-1].buttons.append((self._button[0], self._button[1], self._button[2].strip()))
            self._button = None


def forms_of(html: str) -> tuple[list[Form], str]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms, " ".join(" ".join(parser.text).split())


class Person:
    """Somebody with a browser and an account at the provider."""

    def __init__(self, login: str = "ada", password: str = "correct horse") -> None:
        self.login = login
        self.password = password
        self.http = requests.Session()
        self.http.trust_env = False
        self.pages: list[str] = []  # the URLs seen, in order

    def _submit(self, page: requests.Response, form: Form, *, press: str | None = None, **typed: str) -> Any:
        data = dict(form.fields)
        for name in form.inputs:
            if name in typed:
                data[name] = typed[name]
            elif name == "login":
                data[name] = self.login
            elif name == "password":
                data[name] = self.password
        for name, value, text in form.buttons:
            if (press is None and name != "abort") or (press and press.lower() in text.lower()):
                if name:
                    data[name] = value or ""
                break
        url = urljoin(page.url, form.action)
        if form.method == "post":
            return self.http.post(url, data=data, timeout=10, allow_redirects=False)
        return self.http.get(url, params=data, timeout=10, allow_redirects=False)

    def _follow(self, resp: requests.Response, stop_at: str | None) -> requests.Response:
        """Follow redirects like a browser, except to ``stop_at`` (the app's redirect URI)."""
        for _ in range(20):
            self.pages.append(resp.url)
            if resp.status_code not in (301, 302, 303, 307, 308):
                return resp
            target = urljoin(resp.url, resp.headers["Location"])
            if stop_at is not None and target.startswith(stop_at):
                self.pages.append(target)
                resp.final_redirect = target  # type: ignore[attr-defined]
                return resp
            resp = self.http.get(target, timeout=10, allow_redirects=False)
        raise AssertionError("too many redirects at the provider")

    def walk(
        self, url: str, *, stop_at: str | None = None, deny: bool = False, user_code: str | None = None
    ) -> str:
        """Open ``url`` and answer every page until no form is left (or the provider sends
        the browser to ``stop_at``). Returns the last page's text, or the redirect URL."""
        resp = self._follow(self.http.get(url, timeout=10, allow_redirects=False), stop_at)
        for _ in range(12):
            final = getattr(resp, "final_redirect", None)
            if final is not None:
                return str(final)
            forms, text = forms_of(resp.text)
            forms = [f for f in forms if f.action or f.fields or f.inputs]
            if not forms:
                return text
            form = forms[0]
            typed = {"user_code": user_code} if user_code and "user_code" in form.inputs else {}
            if deny and any(name == "abort" for name, _, _ in form.buttons):
                # The device confirmation page: "[ Abort ]"
                resp = self._follow(self._submit(resp, form, press="abort"), stop_at)
                return getattr(resp, "final_redirect", None) or forms_of(resp.text)[1]
            match = re.search(r'href="([^"]*/abort)"', resp.text)
            if deny and match:
                # The sign-in and consent pages: a "Cancel" link to .../abort
                target = urljoin(resp.url, match.group(1))
                resp = self._follow(self.http.get(target, timeout=10, allow_redirects=False), stop_at)
                return getattr(resp, "final_redirect", None) or forms_of(resp.text)[1]
            press = "Continue" if "Authorize" in text else None
            resp = self._follow(self._submit(resp, form, press=press, **typed), stop_at)
        raise AssertionError("the provider kept showing forms")

    def approve_device(
        self, verification_uri: str, user_code: str | None = None, *, deny: bool = False
    ) -> str:
        """Approve (or deny) a device login: the verification page, sign-in, consent."""
        return self.walk(verification_uri, user_code=user_code, deny=deny)

    def sign_in(self, authorize_url: str, redirect_prefix: str, *, deny: bool = False) -> str:
        """Sign in after the app sent the browser to ``authorize_url``; returns the URL the
        provider redirects the browser to (the app's redirect URI, with code and state)."""
        return self.walk(authorize_url, stop_at=redirect_prefix, deny=deny)
