"""A Hypothesis state machine that drives the stub and a real server with the same SQS calls.

Results are compared after normalising what legitimately differs: message ids (mapped to the
order in which each emulator first returned them), receipt handles, timestamps and sequence
numbers. Known deviations of the reference server are not generated (see ``Reference``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from dagster_taskiq_testing.sqs_emulators import MOTO, SqsEmulator

GROUPS = ("g0", "g1", "g2")
BODIES = ("alpha", "beta", "gamma", "delta")
MAX_STANDARD_MESSAGES = 8
MAX_FIFO_MESSAGES = 10


@dataclass
class Side:
    """One emulator's client, queue URLs and message-id mapping."""

    emulator: SqsEmulator
    client: Any
    fifo_url: str = ""
    standard_url: str = ""
    ids: dict[str, int] = field(default_factory=dict)

    def canonical(self, message_id: str) -> int:
        return self.ids.setdefault(message_id, len(self.ids))


def _outcome(side: Side, method: str, **params: Any) -> tuple[str, Any]:
    try:
        return "ok", getattr(side.client, method)(**params)
    except ClientError as exc:
        return "error", exc.response["Error"]["Code"]


class DifferentialMachine(RuleBasedStateMachine):
    """Same calls, same observable results, on the stub and on ``reference``."""

    reference: SqsEmulator

    def __init__(self) -> None:
        super().__init__()
        self.stub = Side(SqsEmulator.for_stub(), None)
        self.stub.client = self.stub.emulator.client()
        self.real = Side(self.reference, self.reference.client())
        self.dedup_counter = 0
        # canonical message id -> (stub handle, real handle, fifo?, group) of its latest receive
        self.held: dict[int, tuple[str, str, bool, str]] = {}
        self.standard_live = 0

    @initialize()
    def create_queues(self) -> None:
        base = self.real.emulator.queue_name("diff")
        for side in (self.stub, self.real):
            side.fifo_url = side.client.create_queue(
                QueueName=f"{base}.fifo", Attributes={"FifoQueue": "true"}
            )["QueueUrl"]
            side.standard_url = side.client.create_queue(QueueName=base)["QueueUrl"]

    def teardown(self) -> None:
        for side in (self.real,):
            for url in (side.fifo_url, side.standard_url):
                if url:
                    with contextlib.suppress(ClientError):
                        side.client.delete_queue(QueueUrl=url)
        self.stub.emulator.close()

    # -- helpers ----------------------------------------------------------------------------

    def _both(self, method: str, fifo: bool, **params: Any) -> tuple[Any, Any]:
        stub_out = _outcome(
            self.stub,
            method,
            QueueUrl=self.stub.fifo_url if fifo else self.stub.standard_url,
            **params,
        )
        real_out = _outcome(
            self.real,
            method,
            QueueUrl=self.real.fifo_url if fifo else self.real.standard_url,
            **params,
        )
        assert stub_out[0] == real_out[0], (method, params, stub_out, real_out)
        if stub_out[0] == "error":
            assert stub_out[1] == real_out[1], (method, params, stub_out, real_out)
            return None, None
        return stub_out[1], real_out[1]

    def _dedup_id(self, requested: str) -> str:
        if self.real.emulator.name == MOTO:
            # moto forgets deduplication ids of deleted messages and answers a duplicate with
            # a new MessageId: never repeat an id against it.
            self.dedup_counter += 1
            return f"fresh-{self.dedup_counter}"
        return requested

    # -- rules ------------------------------------------------------------------------------

    def _fifo_live(self) -> int:
        stub = self.stub.emulator.stub
        assert stub is not None
        return len(stub.messages(self.stub.fifo_url)) if self.stub.fifo_url else 0

    # A receive of 10 must be able to return every available message: which of more than 10
    # a server picks differs (AWS fills from one group first, moto goes in global order).
    @precondition(lambda self: self._fifo_live() <= MAX_FIFO_MESSAGES - 1)
    @rule(
        group=st.sampled_from(GROUPS),
        dedup=st.sampled_from(("d0", "d1", "d2", "d3", "d4", "d5")),
        body=st.sampled_from(BODIES),
    )
    def send_fifo(self, group: str, dedup: str, body: str) -> None:
        stub_out, real_out = self._both(
            "send_message",
            True,
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=self._dedup_id(dedup),
        )
        if stub_out is not None:
            assert self.stub.canonical(stub_out["MessageId"]) == self.real.canonical(
                real_out["MessageId"]
            )
            assert stub_out["MD5OfMessageBody"] == real_out["MD5OfMessageBody"]

    @precondition(lambda self: self._fifo_live() <= MAX_FIFO_MESSAGES - 4)
    @rule(
        entries=st.lists(
            st.tuples(st.sampled_from(GROUPS), st.sampled_from(BODIES)), min_size=1, max_size=4
        )
    )
    def send_fifo_batch(self, entries: list[tuple[str, str]]) -> None:
        batch = []
        for index, (group, body) in enumerate(entries):
            self.dedup_counter += 1
            batch.append(
                {
                    "Id": f"e{index}",
                    "MessageBody": body,
                    "MessageGroupId": group,
                    "MessageDeduplicationId": f"batch-{self.dedup_counter}",
                }
            )
        stub_out, real_out = self._both("send_message_batch", True, Entries=batch)
        if stub_out is not None:
            stub_ok = sorted(e["Id"] for e in stub_out.get("Successful", []))
            real_ok = sorted(e["Id"] for e in real_out.get("Successful", []))
            assert stub_ok == real_ok
            by_id = {e["Id"]: e["MessageId"] for e in real_out["Successful"]}
            for entry in sorted(stub_out["Successful"], key=lambda e: e["Id"]):
                assert self.stub.canonical(entry["MessageId"]) == self.real.canonical(
                    by_id[entry["Id"]]
                )

    @precondition(lambda self: self.standard_live < MAX_STANDARD_MESSAGES)
    @rule(body=st.sampled_from(BODIES))
    def send_standard(self, body: str) -> None:
        stub_out, real_out = self._both("send_message", False, MessageBody=body)
        if stub_out is not None:
            self.standard_live += 1
            assert self.stub.canonical(stub_out["MessageId"]) == self.real.canonical(
                real_out["MessageId"]
            )

    @rule(fifo=st.booleans(), visibility=st.sampled_from((None, 0, 120)))
    def receive(self, fifo: bool, visibility: int | None) -> None:
        # Always 10, with at most 10 messages in a queue: every available message comes back.
        # Which group a smaller receive picks is not specified (AWS fills from one group
        # first, moto goes by its own order), nor which messages of a standard queue.
        if fifo and visibility == 0 and self.real.emulator.name == MOTO:
            # moto skips the head of a group received with VisibilityTimeout=0 on the next
            # receive, breaking the order within the group; not generated against moto.
            visibility = None
        params: dict[str, Any] = {
            "MaxNumberOfMessages": 10,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "MessageGroupId"],
        }
        if visibility is not None:
            params["VisibilityTimeout"] = visibility
        stub_out, real_out = self._both("receive_message", fifo, **params)
        if stub_out is None:
            return
        stub_seen = self._normalise(self.stub, stub_out)
        real_seen = self._normalise(self.real, real_out)
        # Order is promised within a group only (standard queues: not at all).
        order = (lambda item: item[2]) if fifo else (lambda item: item)
        stub_seen.sort(key=order)
        real_seen.sort(key=order)
        assert stub_seen == real_seen, (fifo, params, stub_seen, real_seen)
        real_handles = {
            self.real.canonical(m["MessageId"]): m["ReceiptHandle"]
            for m in real_out.get("Messages", [])
        }
        for message in stub_out.get("Messages", []):
            key = self.stub.canonical(message["MessageId"])
            if visibility == 0:
                self.held.pop(key, None)
            else:
                group = message.get("Attributes", {}).get("MessageGroupId", "")
                self.held[key] = (message["ReceiptHandle"], real_handles[key], fifo, group)

    @staticmethod
    def _normalise(side: Side, response: dict[str, Any]) -> list[tuple[int, str, str, str]]:
        return [
            (
                side.canonical(m["MessageId"]),
                m["Body"],
                m.get("Attributes", {}).get("MessageGroupId", ""),
                m.get("Attributes", {}).get("ApproximateReceiveCount", ""),
            )
            for m in response.get("Messages", [])
        ]

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.held)))
        stub_handle, real_handle, fifo, _group = self.held.pop(key)
        url_stub = self.stub.fifo_url if fifo else self.stub.standard_url
        url_real = self.real.fifo_url if fifo else self.real.standard_url
        stub_out = _outcome(
            self.stub, "delete_message", QueueUrl=url_stub, ReceiptHandle=stub_handle
        )
        real_out = _outcome(
            self.real, "delete_message", QueueUrl=url_real, ReceiptHandle=real_handle
        )
        assert stub_out[0] == real_out[0] == "ok", (stub_out, real_out)
        if not fifo:
            self.standard_live -= 1

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), timeout=st.sampled_from((0, 300)))
    def change_visibility(self, data: st.DataObject, timeout: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.held)))
        stub_handle, real_handle, fifo, group = self.held[key]
        if (
            fifo
            and timeout == 0
            and any(
                other != key and held[2] and held[3] == group for other, held in self.held.items()
            )
        ):
            # Releasing one message of a FIFO group while another of the group is still in
            # flight: AWS does not say whether the released one may come back before the
            # other is deleted (the stub keeps the group blocked; LocalStack does not).
            timeout = 300
        url_stub = self.stub.fifo_url if fifo else self.stub.standard_url
        url_real = self.real.fifo_url if fifo else self.real.standard_url
        stub_out = _outcome(
            self.stub,
            "change_message_visibility",
            QueueUrl=url_stub,
            ReceiptHandle=stub_handle,
            VisibilityTimeout=timeout,
        )
        real_out = _outcome(
            self.real,
            "change_message_visibility",
            QueueUrl=url_real,
            ReceiptHandle=real_handle,
            VisibilityTimeout=timeout,
        )
        assert stub_out[0] == real_out[0] == "ok", (stub_out, real_out)
        if timeout == 0:
            del self.held[key]

    @rule(fifo=st.booleans())
    def invalid_calls(self, fifo: bool) -> None:
        if fifo:
            self._both("send_message", True, MessageBody="x", MessageDeduplicationId="z")
        self._both("receive_message", fifo, MaxNumberOfMessages=11)
        extra = {"MessageGroupId": "g0", "MessageDeduplicationId": "never"} if fifo else {}
        self._both(
            "send_message_batch",
            fifo,
            Entries=[
                {"Id": "same", "MessageBody": "x", **extra},
                {"Id": "same", "MessageBody": "y", **extra},
            ],
        )

    @invariant()
    def counts_agree(self) -> None:
        if not self.stub.fifo_url:
            return
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        for fifo in (True, False):
            stub_out, real_out = self._both("get_queue_attributes", fifo, AttributeNames=names)
            assert stub_out["Attributes"] == real_out["Attributes"], (fifo, stub_out, real_out)
