"""The processors' web server (port 9102, which Prometheus's NetworkPolicy reaches) serves evi's
pages only: /metrics, /healthz, /readyz, and faust's production index at / ({"status": "OK"}).
None of faust's own pages: /router (cluster topology), /table (table data), the statistics at /
and /assignment, /graph, /performance (docs/processors.md, "faust's web pages")."""

from __future__ import annotations

import faust

from processors.app import faust_config
from processors.settings import ProcessorSettings


def test_faust_serves_none_of_its_own_pages() -> None:
    app = faust.App(**faust_config(ProcessorSettings(web_port=9102), "evi-processor-face"))
    web = app.web
    web.blueprints.apply(web)  # what the worker does when its web server starts
    paths = {resource.canonical for resource in web.web_app.router.resources()}
    assert paths == {"/"}, f"faust serves {sorted(paths - {'/'})}"
