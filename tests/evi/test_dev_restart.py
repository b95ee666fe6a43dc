"""`evi dev` on the real broker: a processor killed with SIGKILL is started again by the
supervisor, results keep coming from the new worker, and SIGTERM then stops every child."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer

from evi.kafka import partitions_of
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from tests.helpers import LOGS, REPO, delete_topics_with_prefix, free_port, watermarks

pytestmark = pytest.mark.kafka

LOG = LOGS / "dev-restart.log"
RUNNING = re.compile(r"^evi dev: (\S+) running \(pid (\d+)(?:, (\d+) restarts?)?\)$", re.M)


def output() -> str:
    return LOG.read_text(errors="replace") if LOG.exists() else ""


def pids(name: str) -> list[tuple[int, int]]:
    """(pid, restarts) of each time `evi dev` said the child is running, in order."""
    return [(int(m[2]), int(m[3] or 0)) for m in RUNNING.finditer(output()) if m[1] == name]


def wait_for(check: object, timeout: float, what: str, dev: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert dev.poll() is None, f"evi dev exited {dev.returncode}:\n{output()[-3000:]}"
        if check():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{output()[-3000:]}")


def results_count(c: Consumer, topic: str, parts: int) -> int:
    return sum(watermarks(c, topic, p)[1] for p in range(parts))


def test_evi_dev_restarts_a_killed_processor_and_results_keep_coming(
    kafka: KafkaSettings,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = Topics(TopicSettings(prefix=prefix))
    env = {**os.environ, "EVI_TOPICS__PREFIX": prefix, "EVI_TOPICS__FRAME_PARTITIONS": "2",
           "EVI_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "EVI_AUTH_TOKEN": uuid.uuid4().hex}
    LOGS.mkdir(parents=True, exist_ok=True)
    c = Consumer(kafka.client_config() | {"group.id": f"t-{uuid.uuid4().hex[:8]}"})
    with open(LOG, "wb") as log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "evi.cli", "dev", "--port", str(free_port()), "--fps", "10"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(lambda: pids("processor-face"), 120, "the processor to start", dev)
            results = topics.results("face")
            parts = partitions_of(kafka, results)
            wait_for(lambda: results_count(c, results, parts) >= 10, 120, "first results", dev)

            (first, restarts), = pids("processor-face")
            assert restarts == 0
            killed = time.monotonic()
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: len(pids("processor-face")) == 2, 60, "the restart", dev)
            restarted = time.monotonic() - killed
            # the time left when the line is written: the 1 s backoff, or a little less (0.98s)
            assert re.search(r"^evi dev: processor-face restarting in (1|0\.9\d*)s \(exited -9\)$",
                             output(), re.M), output()[-2000:]
            second, restarts = pids("processor-face")[1]
            assert second != first and restarts == 1
            before = results_count(c, results, parts)
            wait_for(lambda: results_count(c, results, parts) > before, 120,
                     "a result from the restarted processor", dev)
            print(f"\nrestarted {restarted:.1f}s after SIGKILL, "
                  f"results again {time.monotonic() - killed:.1f}s after it")
            wait_for(lambda: results_count(c, results, parts) >= before + 10, 60,
                     "results from the restarted processor", dev)
            # The others were never restarted, and nothing else gave up.
            assert [r for _, r in pids("gateway")] == [0]
            assert [r for _, r in pids("producer")] == [0]
            assert "giving up" not in output()
        finally:
            dev.send_signal(signal.SIGTERM)
            try:
                code = dev.wait(60)
            except subprocess.TimeoutExpired:
                dev.kill()
                raise
            finally:
                c.close()
                delete_topics_with_prefix(kafka, prefix)
    assert code == 0, output()[-3000:]
    assert "evi dev: stopped; restarted processor-face 1x (Kafka keeps running" in output()
    assert "\x1b" not in output()  # no child nor evi dev draws on a log file
    for name in ("processor-face", "gateway", "producer"):
        for pid, _ in pids(name):
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # every child ended (and was reaped) with evi dev
