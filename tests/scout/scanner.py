"""A deterministic Scout scanner for the import tests: facts a transcript must carry equally
whether Scout read the .eval log or our import of its traces."""

import json

from inspect_scout import Result, Scanner, Transcript, scanner


EVENTS = ("model", "tool", "score")


@scanner(messages="all", events=list(EVENTS))
def transcript_facts() -> Scanner[Transcript]:
    async def scan(transcript: Transcript) -> Result:
        facts = {
            "roles": [m.role for m in transcript.messages],
            "text": [m.text for m in transcript.messages],
            "tool_calls": [[c.function for c in m.tool_calls or []]
                           for m in transcript.messages if m.role == "assistant"],
            "tool_errors": sum(1 for m in transcript.messages
                               if m.role == "tool" and m.error is not None),
            "events": [e.event for e in transcript.events if e.event in EVENTS],
            "tools": [[e.function, e.arguments, str(e.result)] for e in transcript.events
                      if e.event == "tool"],
        }
        return Result(value=json.dumps(facts, sort_keys=True))

    return scan
