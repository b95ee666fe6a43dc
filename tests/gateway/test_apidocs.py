"""The API docs' pages name only the gateway's own assets, which come from the fastapi-offline
package and sit behind the same auth as the docs themselves."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import SecretStr

from evi.settings import TopicSettings
from gateway.apidocs import ASSET_DIR, ASSETS, PREFIX
from gateway.settings import GatewaySettings
from tests.gateway import records as rec
from tests.gateway.gw import TOKEN, bearer
from tests.gateway.offline import offline_gateway

# src=, href= and url(...) in a page; a Swagger/ReDoc page must not reach past the gateway.
LINKS = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""")


def settings(**kw: Any) -> GatewaySettings:
    kw.setdefault("auth_token", SecretStr(TOKEN))
    return GatewaySettings(topics=TopicSettings(prefix=rec.PREFIX), **kw)


def links(html: str) -> list[str]:
    return [a or b for a, b in LINKS.findall(html)]


def test_the_package_still_ships_every_asset_the_pages_name() -> None:
    assert sorted(p.name for p in ASSET_DIR.iterdir() if p.is_file()) == sorted(ASSETS)
    # Real bundles, not stubs: Swagger UI's is ~1.4 MB, ReDoc's ~0.9 MB.
    assert (ASSET_DIR / "swagger-ui-bundle.js").stat().st_size > 500_000
    assert (ASSET_DIR / "redoc.standalone.js").stat().st_size > 500_000


def test_docs_pages_link_only_to_the_gateway_and_assets_need_the_token() -> None:
    with pytest.MonkeyPatch.context() as mp, offline_gateway(mp, settings()) as (c, _):
        for page, expected in (("/docs", {"swagger-ui-bundle.js", "swagger-ui.css",
                                          "favicon.png"}),
                               ("/redoc", {"redoc.standalone.js", "favicon.png"})):
            r = c.get(page, headers=bearer())
            assert r.status_code == 200
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "img-src 'self' data:" in csp
            found = links(r.text)
            assert found, page
            assert all(u.startswith(PREFIX + "/") for u in found), (page, found)
            assert {u.removeprefix(PREFIX + "/") for u in found} == expected, page
            if page == "/docs":  # else Swagger UI posts the spec to an online validator
                assert '"validatorUrl": null' in r.text
        for name, media in ASSETS.items():
            path = f"{PREFIX}/{name}"
            assert c.get(path).status_code == 401, path
            r = c.get(path, headers=bearer())
            assert r.status_code == 200, path
            assert r.headers["content-type"].split(";")[0] == media
            assert r.content == (ASSET_DIR / name).read_bytes()
        for bad in ("core.py", "..%2Fcore.py", "%2e%2e%2f__init__.py", "nope.js"):
            assert c.get(f"{PREFIX}/{bad}", headers=bearer()).status_code == 404, bad
