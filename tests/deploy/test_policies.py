"""Which real-time policy each shipped deployment runs (docs/scaling.md, "Which policy each
deployment runs"): drop-stale where live sources feed the kind, process-all for replays."""

from __future__ import annotations

from tests.deploy.support import Obj, component, k8s_settings, of_kind

# overlay -> kind -> policy; a processor added to an overlay must be placed here too.
POLICIES = {
    "dev": {"face": "drop-stale"},  # the looping sample, in real time
    "prod": {"face": "drop-stale", "person": "drop-stale",  # cameras
             "vehicle": "process-all"},  # `evi replay` jobs of recorded video
}


def test_live_kinds_drop_stale_and_replay_kinds_process_all(
    rendered: dict[str, list[Obj]],
) -> None:
    for overlay, objs in rendered.items():
        found = {
            dep["metadata"]["labels"]["evi/kind"]: k8s_settings(objs, dep)["policy"]
            for dep in of_kind(objs, "Deployment") if component(dep) == "processor"
        }
        assert found == POLICIES[overlay], overlay
