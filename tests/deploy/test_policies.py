"""Which real-time policy each shipped deployment runs (docs/scaling.md, "Which policy each
deployment runs"): drop-stale where live sources feed the kind, process-all for replays."""

from __future__ import annotations

from tests.deploy.support import Obj, component, k8s_settings, of_kind

# overlay -> kind -> policy of every processor Deployment of the kind (FP32 and INT8 groups
# alike); a kind added to an overlay must be placed here too.
POLICIES = {
    "dev": {"face": "drop-stale", "person": "drop-stale"},  # the looping sample, in real time
    "prod": {"face": "drop-stale", "person": "drop-stale",  # cameras
             "vehicle": "process-all"},  # `evi replay` jobs of recorded video
}


def test_live_kinds_drop_stale_and_replay_kinds_process_all(
    rendered: dict[str, list[Obj]],
) -> None:
    for overlay, objs in rendered.items():
        found = {
            (dep["metadata"]["name"], dep["metadata"]["labels"]["evi/kind"]):
                k8s_settings(objs, dep)["policy"]
            for dep in of_kind(objs, "Deployment") if component(dep) == "processor"
        }
        by_kind = {kind: policy for (_, kind), policy in found.items()}
        assert by_kind == POLICIES[overlay], overlay
        for (name, kind), policy in found.items():
            assert policy == POLICIES[overlay][kind], f"{overlay}: {name}"
