"""One job per input before OSCAR 4.1: the submission lease and the job records.

The embedded OSCAR plays 3.7 (jobs named ``<svc>-<uuid4>``, ``X-Delegated-Job-ID`` ignored)
unless a test says otherwise. Jobs and script runs are counted on the cluster: the service
script appends its input to a file on the host before answering with it.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.hooks.api import ClusterSettings
from airflow_provider_oscar.hooks.correlation import (
    CorrelationError,
    Correlator,
    JobRef,
    StatePath,
    named_job,
)
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.s3 import S3Session, Signer
from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import wait_until

# Records each run's input, then answers with it (console text: no output file).
ECHO = 'cat "$INPUT_FILE_PATH" >> "$RUNS_FILE"\necho >> "$RUNS_FILE"\ncat "$INPUT_FILE_PATH"\n'
PROCESSES = 6
PER_PROCESS = 5


@pytest.fixture
def oscar37(oscar_at: Callable[[str], OscarLocal]) -> Iterator[OscarLocal]:
    server = oscar_at("3.7")
    yield server
    server.faults.clear()


@pytest.fixture
def admin37(oscar37: OscarLocal) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=oscar37.endpoint, auth=(oscar37.user, oscar37.password)) as c:
        yield c


@pytest.fixture
def echo(admin37: httpx.Client, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An echo service with an input folder (its bucket holds the records); its runs file."""
    name = f"echo-{uuid.uuid4().hex[:8]}"
    runs = tmp_path / "runs"
    runs.touch()
    body = {
        "name": name,
        "image": "local/test",
        "script": ECHO,
        "log_level": "CRITICAL",
        "environment": {"variables": {"RUNS_FILE": str(runs)}},
        "input": [{"storage_provider": "minio.default", "path": f"{name}/in"}],
    }
    assert admin37.post("/system/services", json=body).status_code == 201
    yield name, runs
    admin37.delete(f"/system/services/{name}")


def settings_of(oscar: OscarLocal) -> ClusterSettings:
    return ClusterSettings(
        endpoint=oscar.endpoint, user=oscar.user, password=oscar.password, retries=2, backoff=0.02
    )


def provider_of(oscar: OscarLocal) -> dict[str, str]:
    s3 = oscar.s3
    return {"endpoint": s3.endpoint, "access_key": s3.access_key, "secret_key": s3.secret_key}


async def with_correlator(
    oscar: OscarLocal, bucket: str, work: Callable[[Correlator], Any], **options: Any
) -> Any:
    settings = settings_of(oscar)
    async with (
        OscarHook().asession(settings=settings) as session,
        httpx.AsyncClient() as http,
    ):
        s3 = S3Session(Signer(provider_of(oscar)), http)
        return await work(Correlator(session, s3, StatePath(bucket), **options))


def submit_in_process(
    settings: dict[str, Any], provider: dict[str, str], service: str, inputs: list[str]
) -> tuple[dict[str, str], float, float]:
    """One worker process: submits each input under its own identity; input -> job, and when
    its submissions started and ended."""

    async def main() -> dict[str, str]:
        found: dict[str, str] = {}
        async with (
            OscarHook().asession(settings=ClusterSettings(**settings)) as session,
            httpx.AsyncClient() as http,
        ):
            correlator = Correlator(session, S3Session(Signer(provider), http), StatePath(service))

            async def one(text: str) -> None:
                async def send() -> None:
                    await session.asubmit_job(service, text)

                ref = await correlator.submit_listed(service, f"input|{text}", send)
                assert ref.job is not None
                found[text] = ref.job

            await asyncio.gather(*(one(text) for text in inputs))
        return found

    started = time.time()
    found = asyncio.run(main())
    return found, started, time.time()


def finished(admin: httpx.Client, service: str, count: int) -> dict[str, Any]:
    def all_done() -> dict[str, Any] | None:
        jobs = admin.get(f"/system/logs/{service}").json()["jobs"]
        done = all(j["status"] in ("Succeeded", "Failed") for j in jobs.values())
        return jobs if len(jobs) >= count and done else None

    return wait_until(all_done, timeout=60, interval=0.2)


# many submitters -----------------------------------------------------------------------------


def test_many_submitters_in_separate_processes_each_get_their_own_job_and_one_run(
    oscar37: OscarLocal, admin37: httpx.Client, echo: tuple[str, Path]
) -> None:
    service, runs = echo
    inputs = [[f"p{p}-input-{i}" for i in range(PER_PROCESS)] for p in range(PROCESSES)]
    settings = settings_of(oscar37).__dict__
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(PROCESSES) as pool:
        mapped = pool.starmap(
            submit_in_process,
            [(settings, provider_of(oscar37), service, chunk) for chunk in inputs],
        )
    seconds = max(end for *_, end in mapped) - min(start for _, start, _ in mapped)
    jobs_by_input = {text: job for found, *_ in mapped for text, job in found.items()}
    total = PROCESSES * PER_PROCESS
    assert len(jobs_by_input) == total
    assert len(set(jobs_by_input.values())) == total  # one job each, none shared
    jobs = finished(admin37, service, total)
    assert len(jobs) == total  # no job submitted twice
    executions = Counter(line for line in runs.read_text().splitlines() if line)
    assert executions == Counter({text: 1 for chunk in inputs for text in chunk})
    for text, job in jobs_by_input.items():  # each job answered its own input
        log = admin37.get(f"/system/logs/{service}/{job}").text
        assert log.strip() == text, (text, job)
    print(
        f"\n{total} inputs from {PROCESSES} processes: {total} jobs, submitted in {seconds:.1f} s"
    )


# retries and recovery ------------------------------------------------------------------------


def test_a_second_submission_of_an_identity_re_attaches_without_submitting(
    oscar37: OscarLocal, admin37: httpx.Client, echo: tuple[str, Path]
) -> None:
    service, _ = echo
    sent: list[str] = []

    async def twice(correlator: Correlator) -> list[JobRef]:
        async def send() -> None:
            sent.append("job")
            await correlator.session.asubmit_job(service, "once")

        return [await correlator.submit_listed(service, "same", send) for _ in range(2)]

    first, second = asyncio.run(with_correlator(oscar37, service, twice))
    assert (first.created, second.created) == (True, False)
    assert first.job == second.job
    assert sent == ["job"]
    assert list(finished(admin37, service, 1)) == [first.job]


def test_an_identity_whose_job_was_deleted_is_submitted_again(
    oscar37: OscarLocal, admin37: httpx.Client, echo: tuple[str, Path]
) -> None:
    service, _ = echo

    async def send_one(correlator: Correlator) -> JobRef:
        async def send() -> None:
            await correlator.session.asubmit_job(service, "again")

        return await correlator.submit_listed(service, "deleted", send)

    first = asyncio.run(with_correlator(oscar37, service, send_one))
    finished(admin37, service, 1)
    assert admin37.delete(f"/system/logs/{service}/{first.job}").status_code == 204
    second = asyncio.run(with_correlator(oscar37, service, send_one))
    assert second.created and second.job != first.job


def test_an_interrupted_submission_is_recovered_from_its_pending_record_not_resent(
    oscar37: OscarLocal, admin37: httpx.Client, echo: tuple[str, Path]
) -> None:
    """The earlier try died between submitting and recording its job."""
    service, _ = echo

    async def recover(correlator: Correlator) -> JobRef:
        assert correlator.s3 is not None and correlator.state is not None
        before = sorted(await correlator.session.alist_jobs(service))
        key = correlator.state.key("jobs", service, _digest("crashed"))
        pending = {"identity": "crashed", "state": "pending", "before": before}
        await correlator.s3.put(service, key, json.dumps(pending).encode())
        await correlator.session.asubmit_job(service, "sent by the try that died")

        async def must_not_send() -> None:
            raise AssertionError("the input was submitted again")

        return await correlator.submit_listed(service, "crashed", must_not_send)

    ref = asyncio.run(with_correlator(oscar37, service, recover))
    assert not ref.created
    assert list(finished(admin37, service, 1)) == [ref.job]


def test_a_submitter_killed_between_claim_and_record_is_recovered_not_resent(
    oscar37: OscarLocal, admin37: httpx.Client, echo: tuple[str, Path]
) -> None:
    """The earlier try claimed its job, then died before its record named it: the claim by
    the same identity is the job, not a reason to submit again."""
    service, runs = echo

    async def recover(correlator: Correlator) -> JobRef:
        assert correlator.s3 is not None and correlator.state is not None
        before = sorted(await correlator.session.alist_jobs(service))
        key = correlator.state.key("jobs", service, _digest("claimed"))
        pending = {"identity": "claimed", "state": "pending", "before": before}
        await correlator.s3.put(service, key, json.dumps(pending).encode())
        await correlator.session.asubmit_job(service, "sent by the try that died")
        job = next(iter(set(await correlator.session.alist_jobs(service)) - set(before)))
        claim = correlator.state.key("claims", service, job)
        await correlator.s3.put(service, claim, b"claimed")

        async def must_not_send() -> None:
            raise AssertionError("the input was submitted again")

        return await correlator.submit_listed(service, "claimed", must_not_send)

    ref = asyncio.run(with_correlator(oscar37, service, recover))
    assert not ref.created
    assert list(finished(admin37, service, 1)) == [ref.job]
    assert runs.read_text().count("sent by the try that died") == 1


def test_a_listing_with_foreign_jobs_is_ambiguous_fails_clearly_and_is_not_resent(
    oscar37: OscarLocal, admin37: httpx.Client, echo: tuple[str, Path]
) -> None:
    service, _ = echo
    sent: list[str] = []

    async def crowded(correlator: Correlator) -> None:
        async def send() -> None:  # another client submits in the same instant
            sent.append("ours")
            await correlator.session.asubmit_job(service, "ours")
            await correlator.session.asubmit_job(service, "someone else's")

        with pytest.raises(CorrelationError, match=r"2 jobs of service .* started while"):
            await correlator.submit_listed(service, "crowded", send)
        with pytest.raises(CorrelationError, match=r"force_rerun=True submits it afresh"):
            await correlator.submit_listed(service, "crowded", send)

    asyncio.run(with_correlator(oscar37, service, crowded))
    assert sent == ["ours"]
    assert len(finished(admin37, service, 2)) == 2


def test_a_lease_left_by_a_submitter_that_died_is_taken_over_once_expired(
    oscar37: OscarLocal, admin37: httpx.Client, echo: tuple[str, Path]
) -> None:
    service, _ = echo

    async def behind_a_dead_holder(correlator: Correlator) -> tuple[JobRef, float]:
        assert correlator.s3 is not None and correlator.state is not None
        key = correlator.state.key("leases", f"{service}.json")
        held = json.dumps({"state": "held", "holder": "dead"}).encode()
        assert await correlator.s3.put(service, key, held, if_none_match=True)
        started = time.monotonic()

        async def send() -> None:
            await correlator.session.asubmit_job(service, "after the takeover")

        ref = await correlator.submit_listed(service, "waiting", send)
        return ref, time.monotonic() - started

    ref, waited = asyncio.run(with_correlator(oscar37, service, behind_a_dead_holder, lease_ttl=2))
    assert ref.created
    assert 1.0 <= waited < 10  # expiry is by the S3 server's clock (one-second stamps)


def test_on_4_1_the_identity_names_the_job_and_a_second_submission_re_attaches(
    oscar: OscarLocal, deploy: Callable[..., dict[str, Any]]
) -> None:
    service = deploy("cat $INPUT_FILE_PATH\n")["name"]

    async def named(correlator: Correlator) -> list[JobRef]:
        return [await correlator.submit_named(service, "id-1", "x") for _ in range(2)]

    first, second = asyncio.run(with_correlator(oscar, service, named))
    assert first == JobRef(service, named_job(service, "id-1"), True)
    assert second == JobRef(service, named_job(service, "id-1"), False)


def _digest(identity: str) -> str:
    from airflow_provider_oscar.hooks.correlation import _digest as digest

    return f"{digest(identity)}.json"
