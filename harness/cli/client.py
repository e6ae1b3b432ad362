"""A small client for the controller: submit cases, follow their events, read the runs.

Stage: the CLI's ``loopcall run --server URL`` and ``loopcall bench --server URL``
(and ``report``/``compare --server URL``, which read a suite run's report)
paths (the same flows as local ones, executed by the controller).  Errors are
``ControllerError`` with the server's message, never a raw HTTP exception.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

from harness.bench.models import BenchReport
from harness.errors import LoopcallError
from harness.models import Case, Run
from harness.reports import Comparison, SuiteReport

__all__ = ["ControllerClient", "ControllerError"]


class ControllerError(LoopcallError):
    """The controller refused or could not be reached; the message says which."""


class ControllerClient:
    def __init__(self, url: str, api_key: str | None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._url = url.rstrip("/")
        self._session = aiohttp.ClientSession(headers=headers)

    async def __aenter__(self) -> ControllerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        text = await self._text(method, path, **kwargs)
        return json.loads(text) if text else None

    async def _text(self, method: str, path: str, **kwargs: Any) -> str:
        try:
            async with self._session.request(method, self._url + path, **kwargs) as response:
                text = await response.text()
                if response.status >= 400:
                    try:
                        detail = json.loads(text).get("detail", text)
                    except (json.JSONDecodeError, AttributeError):
                        detail = text
                    raise ControllerError(f"{method} {path}: HTTP {response.status}: {detail}")
                return text
        except aiohttp.ClientError as exc:
            raise ControllerError(f"cannot reach the controller at {self._url}: {exc}") from exc

    async def submit(
        self,
        cases: list[Case],
        *,
        suite_name: str | None = None,
        target: str | None = None,
        agent_id: str | None = None,
        frequency: int = 1,
    ) -> list[str]:
        """Queue the cases as one request (one suite run); the new runs' ids."""
        dumped = [case.model_dump(mode="json", exclude_none=True) for case in cases]
        body: dict[str, Any] = {"frequency": frequency}
        if suite_name is None and len(dumped) == 1:
            body["case"] = dumped[0]
        else:
            body["suite"] = {"name": suite_name or "cases", "cases": dumped}
        if agent_id is not None:
            body["agent_id"] = agent_id
        else:
            body["target"] = target
        created = await self._request("POST", "/runs", json=body)
        return list(created["run_ids"])

    async def start_bench(self, body: dict[str, Any]) -> BenchReport:
        """``POST /benches``: the bench's first report (status running)."""
        return BenchReport.model_validate(await self._request("POST", "/benches", json=body))

    async def bench(self, bench_id: str) -> BenchReport:
        return BenchReport.model_validate(await self._request("GET", f"/benches/{bench_id}"))

    async def bench_html(self, bench_id: str) -> str:
        return await self._text("GET", f"/benches/{bench_id}/report.html")

    async def cancel_bench(self, bench_id: str) -> None:
        await self._request("POST", f"/benches/{bench_id}/cancel")

    async def suite_report(self, suite_run_id: str) -> SuiteReport:
        body = await self._request("GET", f"/suite-runs/{quote(suite_run_id, safe='')}")
        return SuiteReport.model_validate(body["report"])

    async def compare(self, a: str, b: str, alpha: float) -> Comparison:
        path = f"/suite-runs/{quote(a, safe='')}/compare/{quote(b, safe='')}"
        return Comparison.model_validate(
            await self._request("GET", path, params={"alpha": str(alpha)})
        )

    async def get(self, run_id: str) -> Run:
        return Run.model_validate(await self._request("GET", f"/runs/{run_id}"))

    async def events(self, run_id: str) -> AsyncIterator[dict[str, Any]]:
        """The run's server-sent events, until it ends."""
        try:
            async with self._session.get(f"{self._url}/runs/{run_id}/events") as response:
                if response.status >= 400:
                    raise ControllerError(f"events of {run_id}: HTTP {response.status}")
                kind = ""
                async for raw in response.content:
                    line = raw.decode().strip()
                    if line.startswith("event: "):
                        kind = line[len("event: ") :]
                    elif line.startswith("data: "):
                        yield {"kind": kind, **json.loads(line[len("data: ") :])}
        except aiohttp.ClientError as exc:
            raise ControllerError(f"lost the controller's event stream: {exc}") from exc
