"""`evi dev --autoscale --demo` on the real broker, at 3x pace: one producer process plays
evi/demo.py's schedule (streams join, raise their rate, leave) into two kinds fed by the same
frames. `face` runs `process-all` under the Autoscaler: its workers go 1 -> 2 -> 1 and no
(stream, seq) is lost across either rebalance. `face-live` (the same model) runs one `drop-stale`
worker, stopped (SIGSTOP) for 4 s in the peak: every offered frame is either inferred (a result)
or counted as dropped, and it skips frames that went stale while it was stopped. The timeline
(seconds to scale out and in, lag peak, frames lost) goes to test-artifacts/demo-scaling.json
and docs/scaling.md. A gateway and the dashboard in Chromium watch it too: the scaling panel's
desired-replicas line (KEDA's formula) reaches 2 no later than its workers do, and a screenshot
taken as the panel shows the second worker goes to test-artifacts/demo-scaling-panel.png (not
committed). Takes ~2 minutes."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from evi.demo import demo_schedule
from evi.dev import Autoscaler, Children, dashboard_link
from evi.kafka import ensure_topics, group_lag
from evi.scaleplan import Plan, ScalerConfig, Stabilizer, read_plan
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from evi.wire import parse_frame
from tests.e2e.browser import chromium_page
from tests.gateway.gw import TOKEN
from tests.helpers import (
    LOGS,
    REPO,
    common,
    consume_all,
    delete_topics_with_prefix,
    evi_process,
    free_port,
    header_pairs,
    http_ok,
    log_tail,
    wait_until,
)
from tests.scaling.test_autoscale import PARTITIONS, Results, ready

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

PACE = 3.0  # the 240 s demo in 80 s: peak from 20 s to 43 s
THRESHOLD = 200  # `evi dev --lag-threshold`'s default
STALL_S = 4.0  # the drop-stale worker is stopped this long in the peak: > its 2 s max age
LIVE = "face-live"  # a second kind on the same model, for the drop-stale worker
MODELS = """\
face: {name: blazeface-short, family: blazeface, variant: short}
face-live: {name: blazeface-short, family: blazeface, variant: short}
"""


class Stall:
    """SIGSTOP a process at `at_s` for `length_s`: it is then that far behind, however fast it is
    (a drop-stale worker that keeps up with the peak would never meet a stale frame)."""

    def __init__(self, pid: int, at_s: float, length_s: float) -> None:
        self.pid, self.at_s, self.length_s = pid, at_s, length_s
        self.stopped_s: float | None = None  # when it was stopped, s into the schedule
        self.resumed = False

    def step(self, now_s: float) -> None:
        if self.stopped_s is None and now_s >= self.at_s:
            os.kill(self.pid, signal.SIGSTOP)
            self.stopped_s = now_s
        elif self.stopped_s is not None and now_s >= self.stopped_s + self.length_s:
            self.resume()

    def resume(self) -> None:
        if self.stopped_s is not None and not self.resumed:
            os.kill(self.pid, signal.SIGCONT)
            self.resumed = True


def counter(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} ([0-9.e+]+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


def offered(kafka: KafkaSettings, topic: str) -> set[tuple[str, int]]:
    msgs = consume_all(kafka, topic, timeout=60, require_all=True)
    return {(f.stream, f.seq) for m in msgs
            for f in [parse_frame(m.key(), m.value(), header_pairs(m))]}  # fmt: skip


@pytest.mark.timeout(300)
def test_demo_schedule_scales_out_and_back_in_losing_nothing_and_counting_every_drop(
    kafka: KafkaSettings, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    topics = Topics(TopicSettings(prefix=f"t{uuid.uuid4().hex[:10]}", frame_partitions=PARTITIONS))
    ensure_topics(kafka, topics.specs(["face", LIVE]))
    request.addfinalizer(lambda: delete_topics_with_prefix(kafka, topics.prefix))
    flags = common(kafka, topics.prefix)
    models = tmp_path / "models.yaml"
    models.write_text(MODELS)
    cfg = ScalerConfig(lag_threshold=THRESHOLD, offset_reset_policy="earliest",
                       min_replicas=1, max_replicas=2)
    children = Children(log_dir=LOGS / "demo-scaling", quiet=True)
    scaler = Autoscaler(children, kafka, topics, "face", cfg,
                        worker_args=[*flags, "--decode-threads", "1", "--policy", "process-all"],
                        pin_cores=True, interval_s=1.0,
                        stabilizer=Stabilizer(up_s=3.0, down_s=15.0))
    results = Results(kafka, topics.results("face"))
    schedule = demo_schedule(PACE)
    peak_start, peak_end = schedule.changes()[2], schedule.changes()[3]
    history: list[tuple[float, int, int, int]] = []  # (s since the schedule began, lag, desired,
    t0 = 0.0  # workers)

    def tick() -> None:
        now = time.time()  # the reading's time, as the scaler's events have it
        scaler.poll(now)
        p = scaler.last_plan
        if p and t0:
            history.append((round(now - t0, 1), p.lag, p.desired, len(scaler.workers)))

    def plan() -> Plan:
        return read_plan(kafka, topics, "face", cfg, current=len(scaler.workers))

    port, gw_port = free_port(), free_port()
    stale_group = f"{topics.prefix}-stale"
    panel: dict[str, float] = {}  # first time (s) the page showed desired 2, workers 2, back to 1
    gw_env = {"EVI_KINDS_INTERVAL_S": "1", "EVI_LAG_THRESHOLD": str(THRESHOLD),
              "EVI_MAX_REPLICAS": str(cfg.max_replicas), "EVI_AUTH_TOKEN": TOKEN}
    shot = REPO / "test-artifacts" / "demo-scaling-panel.png"
    shot.parent.mkdir(exist_ok=True)
    try:
        wait_until(lambda: ready(plan), 30, "partition leaders of the new topics")
        with evi_process("demo-stale", "process", "--kind", LIVE, "--models-file", str(models),
                         "--policy", "drop-stale", "--group-id", stale_group, "--web-port",
                         str(port), "--decode-threads", "1", *flags) as stale, \
                evi_process("demo-gateway", "gateway", "--port", str(gw_port), "--kind", "face",
                            "--metrics-port", "0", *flags, env=gw_env), \
                chromium_page() as page:
            wait_until(lambda: http_ok(f"http://127.0.0.1:{gw_port}/readyz"), 60, "gateway")
            page.goto(dashboard_link(gw_port, TOKEN))

            def watch_panel() -> None:
                card = page.evaluate("""() => { const k =
                    document.querySelector('.kind[data-kind="face"]');
                    return k ? [k.dataset.desired, k.dataset.workers] : ['', '']; }""")
                now = round(time.time() - t0, 1)
                if card[0] == "2":
                    panel.setdefault("desired_2", now)
                if card[1] == "2" and "workers_2" not in panel:
                    panel["workers_2"] = now
                    page.screenshot(path=str(shot))
                if card[1] == "1" and "workers_2" in panel:
                    panel.setdefault("workers_1", now)

            tick()  # an empty group: KEDA wakes the minimum, one worker
            assert scaler.workers == ["processor-face-1"]
            wait_until(lambda: plan().members == 1, 90, "the first face worker joining")
            stall = Stall(stale.pid, peak_start + 3.0, STALL_S)
            with evi_process("demo-producer", "produce", "--schedule", "demo", "--pace",
                             str(PACE), "--kind", "face", "--kind", LIVE, *flags) as producer:
                t0 = time.time()
                end = t0 + 150
                try:
                    while time.time() < end and producer.poll() is None:
                        stall.step(time.time() - t0)
                        tick()
                        results.read(0.3)
                        watch_panel()
                        if [e[1] for e in scaler.events][1:3] == ["start", "stop"] and \
                                "workers_1" in panel:
                            break  # out and back in: the rest of the schedule is not needed
                finally:
                    stall.resume()
                assert producer.poll() is None, log_tail("demo-producer")
                assert stall.stopped_s is not None, "the drop-stale worker was never stalled"
            t_stopped = time.time() - t0
            events = [(round(t - t0, 1), what, n) for t, what, n in scaler.events[1:]]
            assert [e[1:] for e in events[:2]] == [("start", 2), ("stop", 1)], (events, history)
            # Everything offered is processed: both groups drain to zero lag.
            for _ in range(120):
                tick()
                results.read(0.3)
                live_lag = sum(p.lag for p in group_lag(kafka, stale_group, topics.frames(LIVE)))
                if plan().lag == 0 and live_lag == 0:
                    break
            assert plan().lag == 0 and live_lag == 0, (plan(), live_lag)
            time.sleep(1.5)  # the last results are delivered and counted within a batch
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                metrics = r.read().decode()
            assert stale.poll() is None, log_tail("demo-stale")
        results.catch_up()
    finally:
        scaler.close()
        children.stop()
        results.c.close()

    face_offered = offered(kafka, topics.frames("face"))
    lost = face_offered - results.keys()
    live_offered = offered(kafka, topics.frames(LIVE))
    live_results = Results(kafka, topics.results(LIVE))
    live_results.catch_up()
    live_results.c.close()
    inferred = counter(metrics, "evi_processor_frames_total", kind=LIVE)
    dropped = counter(metrics, "evi_processor_frames_dropped_total", kind=LIVE)
    stale_dropped = counter(metrics, "evi_processor_frames_dropped_total", kind=LIVE,
                            reason="stale")
    out_at, in_at = events[0][0], events[1][0]
    first_desired_2 = next((t for t, _, d, _ in history if d >= 2), None)
    timeline = {
        "pace": PACE, "peak_s": [round(peak_start, 1), round(peak_end, 1)],
        "scale_out_s_after_peak_start": round(out_at - peak_start, 1),
        "scale_in_s_after_peak_end": round(in_at - peak_end, 1),
        "desired_2_at_s": first_desired_2, "workers_2_at_s": out_at, "workers_1_at_s": in_at,
        "lag_peak": max(lag for _, lag, _, _ in history),
        "producer_stopped_s": round(t_stopped, 1), "panel": panel,
        "process_all": {"offered": len(face_offered), "lost": len(lost),
                        "duplicates": len(results.seen) - len(results.keys())},
        "drop_stale": {"offered": len(live_offered), "results": len(live_results.keys()),
                       "inferred": inferred, "dropped": dropped, "dropped_stale": stale_dropped,
                       "stalled_s": stall.stopped_s},
        "history": history,
    }
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "demo-scaling.json").write_text(json.dumps(timeline, indent=1))
    print(json.dumps({k: v for k, v in timeline.items() if k != "history"}))
    assert out_at > peak_start - 1, timeline  # the peak, not the join step, asked for a 2nd
    assert first_desired_2 is not None and first_desired_2 <= out_at, timeline  # plan leads
    # The dashboard showed it: desired first (or in the same sample), then the workers, then 1.
    assert panel.get("desired_2", 1e9) <= panel.get("workers_2", 0) < panel.get("workers_1", 0), \
        timeline
    assert not lost, f"{len(lost)} of {len(face_offered)} lost, e.g. {sorted(lost)[:5]}"
    # The peak was played, not just the calm: without it ~900 frames (the producer offers 50-100 %
    # of the peak's 180 fps on a loaded machine: 2,300-4,600 frames in all).
    assert len(face_offered) > 1500, timeline
    # drop-stale: every offered frame was inferred (one result each) or counted as dropped.
    assert live_results.keys() <= live_offered
    assert len(live_results.keys()) == inferred, timeline
    assert inferred + dropped == len(live_offered), timeline
    # Stopped 4 s in the peak, it came back 2 s past its max age and skipped what had gone stale
    # instead of working through it.
    assert stale_dropped > 0, timeline
