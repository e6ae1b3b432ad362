"""The reference agent's booking flow against loopcall's real tools URL and webhook.

No audio: the flow is driven as ``TurnLogic`` drives it (greeting laid, caller
done), over real HTTP on 127.0.0.1 to ``serve_ingest``.
"""

from __future__ import annotations

import time

from harness.ingest import events_url, serve_ingest, tools_url
from harness.models import Case
from refagent.booking import BookingFlow, slot_lines
from refagent.loopcall_link import Handover, LoopcallLink
from refagent.script import DENTAL_SCRIPT

CASE = {
    "name": "flow",
    "persona": {"name": "p"},
    "tools": [
        {"name": "check_availability", "response": {"slots": ["wednesday 14:30", "Friday 9:00"]}},
        {"name": "book_appointment", "response": {"status": "booked", "confirmation": "B7"}},
    ],
}


class _Voice:
    """Stands in for the TTS: the flow only asks it to have a line ready."""

    def __init__(self) -> None:
        self.said: list[tuple[str, int]] = []

    async def synthesize_async(self, text: str, sample_rate: int) -> None:
        self.said.append((text, sample_rate))


def test_the_built_in_slot_says_the_scripts_own_lines() -> None:
    # So that, under the case's default slot, the agent's words (and their audio,
    # synthesized at start-up) are the script's.
    assert slot_lines("Tuesday", "10:00") == DENTAL_SCRIPT.replies[:2]
    assert slot_lines("Friday", "9:15") is not None
    assert slot_lines("Friday", "25:00") is None


async def test_the_flow_books_through_the_tools_url_and_reports_its_nodes() -> None:
    async with serve_ingest() as ingest:
        inbox = ingest.inboxes.open("run-f", Case.model_validate(CASE))
        inbox.set_origin(time.time())
        link = LoopcallLink(
            Handover(
                "run-f",
                tools_url(ingest.base_url, "run-f", inbox.token),
                events_url(ingest.base_url, "run-f"),
                inbox.token,
            )
        )
        voice = _Voice()
        flow = BookingFlow(link, voice, 16_000)  # type: ignore[arg-type]
        flow.greeted()
        offer = "Thanks. I have an opening on Wednesday at two thirty in the afternoon. "
        await flow.settled()
        assert flow.reply(0, "built-in") == offer + "Does that work for you?"
        assert [s for _, s in voice.said] == [16_000, 16_000]  # both lines, before they're due
        flow.caller_done(0)
        flow.heard(1, "Hi, this is alex morgan.")
        assert flow.reply(1, "built-in").startswith(
            "Perfect, you are all set for Wednesday at two thirty."
        )
        flow.caller_done(1)
        flow.caller_done(2)
        await flow.settled()
        await link.close()  # the last reports leave first
    assert [(c.name, c.status_code) for c in inbox.tool_calls] == [
        ("check_availability", 200),
        ("book_appointment", 200),
    ]
    assert inbox.tool_calls[1].args == {"day": "Wednesday", "time": "14:30", "name": "Alex Morgan"}
    assert sorted(e.name for e in inbox.agent_events) == [
        "collect_details",
        "confirm_booking",
        "goodbye",
        "greet",
    ]
    confirm = next(e for e in inbox.agent_events if e.name == "confirm_booking")
    assert confirm.args == {"confirmation": "B7"} and confirm.source == "webhook"


async def test_without_a_tools_url_the_flow_keeps_its_built_in_answers() -> None:
    flow = BookingFlow(None, _Voice(), 16_000)  # type: ignore[arg-type]
    flow.greeted()
    flow.caller_done(0)
    assert flow.reply(0, "built-in") == "built-in"
    # A tools URL that answers nothing usable: the script's lines, and the call goes on.
    link = LoopcallLink(Handover(tools_url="http://127.0.0.1:9/runs/x/tools/t"))
    flow = BookingFlow(link, _Voice(), 16_000)  # type: ignore[arg-type]
    flow.greeted()
    await flow.settled()
    assert flow.reply(0, "built-in") == "built-in"
    await link.close()
