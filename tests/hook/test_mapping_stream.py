"""The incremental mapper alone (pure, no server): Inspect's real event classes fed in the live
stream's order (a model event twice, the ToolEvent after its span's end, the init span only at
the end) give each span once, when it completes, equal to the log-order mapping of the sample."""

from __future__ import annotations

from inspect_ai.event import ModelEvent, SpanBeginEvent, SpanEndEvent, ToolEvent
from inspect_ai.model import GenerateConfig, ModelOutput, ModelUsage

from inspect_otel.content import ContentPolicy
from inspect_otel.mapping import SampleMapper, finish_sample, map_sample, sample_identity

from tests.hook.test_mapping_cases import CTX, at, sample


def _model(uuid: str, start: float, end: float | None, span_id: str) -> ModelEvent:
    output = ModelOutput.from_content("openai/gpt-4o", "hi")
    output.usage = ModelUsage(input_tokens=3, output_tokens=2, total_tokens=5)
    return ModelEvent(uuid=uuid, model="openai/gpt-4o", input=[], tools=[], tool_choice="auto",
                      config=GenerateConfig(), output=output, span_id=span_id,
                      timestamp=at(start), completed=at(end) if end is not None else None)


def _events():
    """(log order, live order) of one sample's transcript."""
    init_b = SpanBeginEvent(uuid="e0", id="init", name="init", type="init", timestamp=at(0))
    init_e = SpanEndEvent(uuid="e1", id="init", timestamp=at(0.5))
    solvers_b = SpanBeginEvent(uuid="e2", id="sv", name="solvers", type="solvers", timestamp=at(1))
    model = _model("e3", 1, 2, "sv")
    tool_b = SpanBeginEvent(uuid="e4", id="t1", parent_id="sv", name="bash", type="tool",
                            timestamp=at(2))
    tool = ToolEvent(uuid="e5", id="call-1", function="bash", arguments={}, result="ok",
                     span_id="sv", timestamp=at(2), completed=at(3))
    tool_e = SpanEndEvent(uuid="e6", id="t1", timestamp=at(3))
    solvers_e = SpanEndEvent(uuid="e7", id="sv", timestamp=at(4))
    log = [init_b, init_e, solvers_b, model, tool_b, tool, tool_e, solvers_e]
    pending_model = _model("e3", 1, None, "sv")  # first delivery, before it completed
    live = [solvers_b, pending_model, model, model, tool_b, tool_e, tool, solvers_e]
    return log, live


def _mapper(finished) -> SampleMapper:
    return SampleMapper(CTX, ContentPolicy(), identity=sample_identity(finished, CTX),
                        uuid=finished.uuid, start_ns=0, live=True)


def test_live_order_emits_each_span_once_when_complete_and_equal_to_the_log_order():
    log, live = _events()
    finished = sample(log)
    mapper = _mapper(finished)
    fed = [(event.uuid, mapper.feed(event).spans) for event in live]
    names = [(uuid, [s.name for s in spans]) for uuid, spans in fed]
    # the model span once, when complete (not pending, not again); the tool span with its
    # ToolEvent, after its span's end; solvers at its end
    assert names == [("e2", []), ("e3", []), ("e3", ["chat gpt-4o"]), ("e3", []), ("e4", []),
                     ("e6", []), ("e5", ["execute_tool bash"]), ("e7", ["solvers"])]
    final = finish_sample(mapper, finished)
    assert [s.name for s in final.spans] == ["invoke_agent t", "init"]  # root, init at the end
    live_spans = [s for _, spans in fed for s in spans] + list(final.spans)
    reference = {s.span_id: s for s in map_sample(finished, CTX, ContentPolicy()).spans}
    assert len(live_spans) == len({s.span_id for s in live_spans}) == len(reference)
    for span in live_spans:
        assert span == reference[span.span_id], span.name


def test_a_span_of_an_unseen_parent_waits_for_the_transcript():
    """Live, an event inside a span the stream never delivered is mapped at the end, from the
    transcript, under its real parent (never re-parented to the root)."""
    log, _ = _events()
    finished = sample(log)
    mapper = _mapper(finished)
    assert not mapper.feed(log[3])  # the model call, its solvers span not seen yet
    spans = {s.name: s for s in finish_sample(mapper, finished).spans}
    assert spans["chat gpt-4o"].parent_span_id == spans["solvers"].span_id


def test_a_finished_and_an_abandoned_root_are_built_by_one_builder():
    """Issue 26: the abandoned root (a sample torn down before its end) carries every attribute
    of the common block a finished root carries, with the same counts for what was mapped."""
    from inspect_otel.mapping import abandon_sample
    from inspect_otel.mapping._sample import root_attributes

    log, live = _events()
    finished = sample(log)
    done, torn = _mapper(finished), _mapper(finished)
    for event in live:
        done.feed(event)
        torn.feed(event)
    finished_root = finish_sample(done, finished).spans[0]
    abandoned_root = abandon_sample(torn, 10**10).spans[0]
    common = root_attributes(torn, "cancelled", retries=0)
    assert set(common) <= set(abandoned_root.attributes) and set(common) <= set(
        finished_root.attributes)
    for key in common:
        if key != "inspect.sample.status":
            assert abandoned_root.attributes[key] == finished_root.attributes[key], key
    assert abandoned_root.attributes["inspect.sample.status"] == "cancelled"
    assert abandoned_root.attributes["inspect.sample.tool_calls"] == 1
