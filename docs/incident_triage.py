"""The eval behind the README's MLflow screenshots: an agent eval shaped like a team's own.

``incident_triage``: 8 incidents x 2 epochs, Inspect's ``react`` agent with two tools
(``search_logs``, ``check_metric``) and a scripted mock model (offline, no API key), 10-15
messages per sample, two scorers (``root_cause``: right or wrong; ``efficiency``: fewer tool
calls score higher), and one incident whose metrics backend is down: that sample crashes.

Two variants of the model stand for two versions of an agent: ``baseline`` (prompt v1) and
``candidate`` (prompt v2: it checks fewer places, fixes two incidents and breaks one). An
incident can be solved in one epoch and missed in the other, so epochs differ.

    from incident_triage import run_triage
    log = run_triage(log_dir, variant="candidate", tags=["candidate-v2"])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspect_ai import Task, eval, task
from inspect_ai.agent import react
from inspect_ai.dataset import Sample
from inspect_ai.log import EvalLog
from inspect_ai.model import ChatMessageTool, ChatMessageUser, ModelOutput, ModelUsage
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, mean, scorer
from inspect_ai.solver import TaskState
from inspect_ai.tool import Tool, ToolError, tool

MODEL = "mockllm/model"
TASK = "incident_triage"
PROMPTS = {
    "baseline": "You are an on-call SRE. Find the root cause of the incident: search the logs and "
                "check the metrics before you conclude, then submit the root cause in a few words.",
    "candidate": "You are an on-call SRE. Form a hypothesis from the alert first, confirm it with "
                 "as few log searches and metric checks as you need, then submit the root cause "
                 "in a few words.",
}


@dataclass(frozen=True)
class Incident:
    id: str
    alert: str
    root_cause: str  # the target: a submitted answer containing it is right
    steps: tuple[tuple[str, str], ...]  # (tool, argument) the agent looks at, in order
    wrong: str  # what a misled agent submits


INCIDENTS: tuple[Incident, ...] = (
    Incident("inc-101", "checkout-api p99 latency 4.2s (SLO 800ms) since 09:12",
             "connection pool exhausted",
             (("search_logs", "checkout-api timeout"), ("check_metric", "db.pool.in_use"),
              ("search_logs", "pool wait"), ("check_metric", "db.pool.max"),
              ("check_metric", "checkout-api.rps")),
             "slow database queries"),
    Incident("inc-102", "payments-worker crash loop (OOMKilled) after deploy 4f2a",
             "memory leak in retry queue",
             (("search_logs", "payments-worker OOM"), ("check_metric", "payments.heap"),
              ("search_logs", "retry queue size"), ("check_metric", "payments.retry_queue")),
             "container memory limit too low"),
    Incident("inc-103", "search 5xx rate 12% in eu-west-1",
             "expired TLS certificate",
             (("search_logs", "search 5xx"), ("search_logs", "handshake"),
              ("check_metric", "search.tls.errors"), ("search_logs", "certificate")),
             "bad index rollout"),
    Incident("inc-104", "login success rate dropped to 71%",
             "rate limiter misconfigured",
             (("search_logs", "login 429"), ("check_metric", "auth.rate_limited"),
              ("search_logs", "ratelimit config"), ("check_metric", "auth.rps")),
             "identity provider outage"),
    Incident("inc-105", "order events delayed by 25 minutes",
             "kafka consumer lag",
             (("check_metric", "orders.consumer_lag"), ("search_logs", "rebalance"),
              ("check_metric", "orders.partitions")),
             "producer outage"),
    Incident("inc-106", "disk 97% full on analytics-db-2",
             "unrotated audit logs",
             (("check_metric", "analytics-db-2.disk"), ("search_logs", "audit log size"),
              ("search_logs", "logrotate")),
             "table bloat"),
    Incident("inc-107", "nightly report job missing for 2 days",
             "cron timezone change",
             (("search_logs", "report job"), ("check_metric", "reports.completed"),
              ("search_logs", "cron schedule TZ")),
             "report service down"),
    # Its metrics backend is down: check_metric raises (not a ToolError), the sample crashes.
    Incident("inc-108", "cache hit ratio fell from 94% to 40%",
             "cache eviction storm",
             (("search_logs", "cache evict"), ("check_metric", "cache.evictions")),
             "cache cluster restart"),
)
BY_ALERT = {i.alert: i for i in INCIDENTS}
CRASHING = "inc-108"

# Which incidents each variant gets wrong, per epoch (1-based): the candidate fixes inc-102 and
# inc-104 (inc-104 only in one epoch) and breaks inc-105.
WRONG: dict[str, dict[str, tuple[int, ...]]] = {
    "baseline": {"inc-102": (1, 2), "inc-103": (2,), "inc-104": (1, 2)},
    "candidate": {"inc-103": (2,), "inc-104": (2,), "inc-105": (1, 2)},
}


@tool
def search_logs() -> Tool:
    async def execute(query: str) -> str:
        """Search the service logs.

        Args:
            query: Words to look for.

        Returns:
            The matching log lines.
        """
        return (f"3 lines match '{query}':\n"
                f"09:12:04 WARN  {query} (1st occurrence)\n"
                f"09:12:09 WARN  {query} (x41 in 5s)\n"
                f"09:14:30 ERROR {query}: giving up after 3 retries")

    return execute


@tool
def check_metric() -> Tool:
    async def execute(name: str) -> str:
        """Read a metric's last 30 minutes.

        Args:
            name: The metric's name.

        Returns:
            Its minimum, maximum and last value.
        """
        if name.startswith("cache."):
            raise ConnectionError("metrics backend unreachable: 10.0.4.7:9090 connection refused")
        if name == "auth.rps":
            raise ToolError(f"no data for {name} in the last 30 minutes")
        return f"{name}: min 12, max 98, last 97 (threshold 80)"

    return execute


def _usage(messages: list[Any], text: str) -> ModelUsage:
    # Always set: without usage, mockllm counts tokens with a tokenizer it downloads (offline).
    prompt = sum(len(getattr(m, "text", "") or "") for m in messages) // 4 + 120
    completion = len(text) // 4 + 12
    return ModelUsage(input_tokens=prompt, output_tokens=completion,
                      total_tokens=prompt + completion)


def scripted_agent(variant: str) -> Any:
    """The mock model of one variant: it walks its incident's steps (the candidate skips the
    last one), then submits the root cause, or the misleading one in its wrong epochs."""
    starts: dict[str, int] = {}  # incident -> conversations started (the epoch, in order)
    epochs: dict[tuple[str, str], int] = {}  # (incident, its question's message id) -> epoch

    def generate(input: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
        user = next((m for m in input if isinstance(m, ChatMessageUser)), None)
        question = user.text if user is not None else ""
        incident = next((i for alert, i in BY_ALERT.items() if alert in question), None)
        if incident is None:
            out = ModelOutput.from_content(MODEL, "I can only triage the scripted incidents.")
            out.usage = _usage(input, out.completion)
            return out
        key = (incident.id, str(user.id))
        if key not in epochs:
            starts[incident.id] = starts.get(incident.id, 0) + 1
            epochs[key] = starts[incident.id]
        epoch = epochs[key]
        steps = incident.steps[:-1] if variant == "candidate" and len(incident.steps) > 3 \
            else incident.steps
        done = sum(1 for m in input if isinstance(m, ChatMessageTool))
        if done < len(steps):
            tool_name, arg = steps[done]
            param = "query" if tool_name == "search_logs" else "name"
            thought = ("The alert suggests looking at " if done == 0 else
                       "That narrows it down; next I check ") + f"{arg}."
            out = ModelOutput.for_tool_call(MODEL, tool_name, {param: arg}, content=thought)
        else:
            wrong = epoch in WRONG[variant].get(incident.id, ())
            answer = incident.wrong if wrong else incident.root_cause
            out = ModelOutput.for_tool_call(MODEL, "submit", {"answer": answer},
                                            content=f"The evidence points to {answer}.")
        out.usage = _usage(input, out.completion)
        return out

    return generate


@scorer(metrics=[mean()])
def root_cause():
    """Right when the submitted answer names the incident's root cause."""

    async def score(state: TaskState, target: Target) -> Score:
        answer = state.output.completion
        right = target.text.lower() in answer.lower()
        return Score(value=CORRECT if right else INCORRECT, answer=answer,
                     explanation=f"expected '{target.text}'")

    return score


@scorer(metrics=[mean()])
def efficiency():
    """1.0 for three tool calls or fewer, 0.2 less for each further call (at least 0)."""

    async def score(state: TaskState, target: Target) -> Score:
        calls = sum(1 for m in state.messages if isinstance(m, ChatMessageTool)
                    and m.function != "submit")
        return Score(value=max(0.0, round(1.0 - 0.2 * max(0, calls - 3), 2)),
                     explanation=f"{calls} tool calls")

    return score


@task(name=TASK)
def incident_triage(variant: str = "baseline") -> Task:
    return Task(
        dataset=[Sample(id=i.id, input=f"Alert: {i.alert}. What is the root cause?",
                        target=i.root_cause, metadata={"service": i.alert.split()[0]})
                 for i in INCIDENTS],
        solver=react(prompt=PROMPTS[variant], tools=[search_logs(), check_metric()]),
        scorer=[root_cause(), efficiency()],
        epochs=2,
    )


def run_triage(log_dir: Path, variant: str, tags: list[str], **kwargs: Any) -> EvalLog:
    """One eval of ``incident_triage`` with ``variant``'s model, tagged ``tags``."""
    return eval(incident_triage(variant=variant), model=MODEL,
                model_args={"custom_outputs": scripted_agent(variant)}, log_dir=str(log_dir),
                tags=tags, metadata={"prompt": "v2" if variant == "candidate" else "v1"},
                fail_on_error=False, display="none", **kwargs)[0]
