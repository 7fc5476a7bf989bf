"""The test identity provider and the API it protects work as the OAuth tests assume."""

from __future__ import annotations

import requests

from tests.idp.person import Person
from tests.idp.servers import CLIENT_SECRET


def test_device_approval_through_the_providers_pages_gives_a_token_the_api_accepts(idp, oauth_api):
    start = requests.post(
        f"{idp.issuer}/device/auth", data={"client_id": "notebook", "scope": "openid profile"}, timeout=10
    ).json()
    poll = {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": start["device_code"],
        "client_id": "notebook",
    }
    pending = requests.post(f"{idp.issuer}/token", data=poll, timeout=10)
    assert pending.json()["error"] == "authorization_pending"
    page = Person("grace").approve_device(start["verification_uri"], start["user_code"])
    assert "successful" in page
    token = requests.post(f"{idp.issuer}/token", data=poll, timeout=10).json()
    assert {"access_token", "refresh_token", "id_token"} <= set(token)
    me = requests.get(
        f"{oauth_api.url}/me", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10
    )
    assert me.status_code == 200 and me.json()["sub"] == "grace"
    assert requests.get(f"{oauth_api.url}/me", timeout=10).status_code == 401
    idp.revoke(token["refresh_token"])
    again = requests.get(
        f"{oauth_api.url}/me", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10
    )
    assert again.status_code == 401  # revoking the refresh token revoked the grant


def test_client_credentials_and_a_refused_secret(idp):
    ok = requests.post(
        f"{idp.issuer}/token",
        data={"grant_type": "client_credentials"},
        auth=("robot", CLIENT_SECRET),
        timeout=10,
    )
    assert ok.status_code == 200 and "refresh_token" not in ok.json()
    bad = requests.post(
        f"{idp.issuer}/token", data={"grant_type": "client_credentials"}, auth=("robot", "wrong"), timeout=10
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
