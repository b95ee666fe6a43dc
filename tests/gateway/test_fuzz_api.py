"""The REST API fuzzed from its own OpenAPI schema (schemathesis' hypothesis strategies), against
the real app served in-process over a fan-out holding hostile-but-valid state: no request may
get a 500, and every 200 must match the schema the API publishes. No broker (tests/gateway/
offline.py); bounded by examples and time."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import schemathesis
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from evi.settings import TopicSettings
from evi.wire import MAX_SEQ, MAX_TS_MS, Result, encode_result
from gateway.settings import GatewaySettings
from tests.gateway import records as rec
from tests.gateway.feed import jpeg
from tests.gateway.gw import TOKEN, bearer
from tests.gateway.offline import OfflineFanout, offline_gateway
from tests.helpers import wait_until

# Every response: no 5xx, a status code, content type and body the schema declares. (Not
# schemathesis' auth checks: with --no-auth, /api is open by design.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
EXAMPLES = 120  # per operation; 8 operations
BUDGET_S = 50.0


def extreme_records() -> list[Message]:
    """Valid records at the edges of every range: ts 0 and year 9999, seq 2**53-1, forged
    seqs, many models, a registry entry with every field at its limit."""
    out: list[Message] = [rec.registry("cam1"), rec.registry("r-" + "x" * 126, "error")]
    for i, (seq, ts) in enumerate([(0, 0), (MAX_SEQ, MAX_TS_MS), (10**15, 1), (1, MAX_TS_MS)]):
        r = Result(f"edge{i}", seq, ts, MAX_TS_MS, "face", "m" * 64, [], 1e9, 65_535, 0)
        out.append(Message(topic=f"{rec.PREFIX}.results.face", key=r.stream.encode(),
                           value=encode_result(r)))
    for s in range(5):
        out += [rec.frame("cam1", s, 1000 + s, jpeg(s)), rec.result("cam1", s, 1000 + s)]
        out += [rec.result("cam1", s, 1000 + s, model=f"model{m}") for m in range(20)]
    return out


def fuzz(client: httpx.Client, token: str | None) -> dict[str, Any]:
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    ran: dict[str, int] = {}
    codes: dict[int, int] = {}
    failures: list[str] = []
    deadline = time.monotonic() + BUDGET_S
    headers = {"Authorization": f"Bearer {token}"} if token else None
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        op = result.ok()
        label = op.label
        ran[label] = 0

        strategy = op.as_strategy(GenerationMode.POSITIVE) | op.as_strategy(
            GenerationMode.NEGATIVE)  # also values the schema refuses: they must be 4xx

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def one(case: Any) -> None:
            if time.monotonic() > deadline:
                return
            ran[case.operation.label] += 1
            response = case.call(base_url=str(client.base_url), headers=headers, timeout=10)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.operation.label} {case.path_parameters} {case.query}: "
                                f"{response.status_code} {response.text[:200]}")
                return
            case.validate_response(response, checks=CHECKS)

        one()
    return {"ran": ran, "codes": codes, "failures": failures}


@pytest.mark.parametrize("token", [None, TOKEN])
def test_rest_api_fuzzed_from_its_schema_never_answers_500(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    # feed_stall_s: the offline fan-out has no poll loop to tick while the fuzzing runs.
    s = GatewaySettings(topics=TopicSettings(prefix=rec.PREFIX), max_models=8,
                        auth_token=SecretStr(token) if token else None,
                        auth_required=token is not None, feed_stall_s=3600)
    t0 = time.monotonic()
    with offline_gateway(monkeypatch, s, bearer(token)) as (client, fanout):
        fanout.inject(extreme_records())
        wait_until(lambda: len(fanout.streams) == 5, 5, "records handled")
        assert isinstance(fanout, OfflineFanout)
        out = fuzz(client, token)
        assert client.get("/readyz").json() == {"status": "ready"}, "still serving after"
    cases = sum(out["ran"].values())
    print(f"\nREST fuzz (token={'yes' if token else 'no'}): {cases} cases "
          f"{out['ran']} codes {out['codes']} in {time.monotonic() - t0:.1f}s")
    assert out["failures"] == []
    assert out["codes"].get(500, 0) == 0 and cases >= 7
    assert all(n >= 1 for n in out["ran"].values())
