"""Scout scanners to start from, for transcripts imported by `inspect-otel scout-import`.

    inspect-otel scout-import --mlflow-uri http://127.0.0.1:5000 -T ./transcripts   # or --otlp FILE
    scout scan docs/examples/scanner.py -T ./transcripts
    scout view                                    # browse the results (./scans)

A scanner sees one transcript (one sample x epoch) and returns a `Result`: `value` is what you
filter and count on, `explanation` what a person reads, `references` link to the events it
cites (Scout's viewer shows them). Neither needs a model or captured content: tool events, errors
and scores travel with content capture off too. Copy this file and change the questions; for
questions only a model can answer, see `llm_scanner` in docs/scout.md.
"""

from inspect_scout import Reference, Result, Scanner, Transcript, scanner


@scanner(events=["tool"])
def tool_errors() -> Scanner[Transcript]:
    """Tool calls that failed, with the error the model was shown: how often an agent fights
    its tools, and with which."""

    async def scan(transcript: Transcript) -> Result:
        failed = [e for e in transcript.events if e.event == "tool" and e.error is not None]
        cites = [f"[E{i}]" for i in range(1, len(failed) + 1)]
        return Result(
            value=len(failed),
            explanation="\n".join(f"{cite} {e.function}: {e.error.message}"
                                  for cite, e in zip(cites, failed)) or "no tool call failed",
            references=[Reference(type="event", id=e.uuid, cite=cite)
                        for cite, e in zip(cites, failed) if e.uuid],
        )

    return scan


@scanner(messages=["assistant"])
def failures() -> Scanner[Transcript]:
    """Why a sample did not succeed: it errored, it hit a limit, or its (first) score is not a
    success. The value is the kind, "" for a sample that succeeded."""

    async def scan(transcript: Transcript) -> Result:
        if transcript.error:
            kind, why = "error", transcript.error
        elif transcript.limit:
            kind, why = "limit", f"hit its {transcript.limit} limit"
        elif transcript.success is False:
            kind = "score"
            why = f"scored {transcript.score}" + (
                f": {transcript.score_explanation}" if transcript.score_explanation else "")
        else:
            return Result(value="", explanation="succeeded")
        answer = next((m.text for m in reversed(transcript.messages)
                       if m.role == "assistant" and m.text), None)
        if answer:
            why += f" (last answer: {answer[:200]!r})"
        return Result(value=kind, explanation=why)

    return scan
