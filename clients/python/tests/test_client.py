"""The sync Client against a scripted peer on a real Unix socket."""

from __future__ import annotations

import gc
import json
import os
import tempfile
import threading
import time
import unittest
from typing import Any, Callable, Dict, List
from unittest import mock

import sparkd
from sparkd import Client, Health, ModelInfo, SparkdError
from sparkd import sparkd_pb2 as pb

from ._peer import PeerConnection, ScriptedPeer, error_response, response


class ClientTestCase(unittest.TestCase):
    """Starts a peer and a client connected to it; ``self.peer_conn`` is the daemon's end."""

    client_timeout_s = 10.0

    def setUp(self) -> None:
        self.peer = ScriptedPeer()
        self.addCleanup(self.peer.close)
        self.client = Client(self.peer.socket_path, timeout=self.client_timeout_s)
        self.addCleanup(self.client.close)
        self.peer_conn: PeerConnection = self.peer.accept()

    def in_thread(self, target, *args, **kwargs) -> "Result":  # type: ignore[no-untyped-def]
        """Run a client call in a thread, so the test can play the daemon meanwhile."""
        result = Result()

        def run() -> None:
            try:
                result.value = target(*args, **kwargs)
            except BaseException as error:  # handed to the test to assert on
                result.error = error

        result.thread = threading.Thread(target=run, daemon=True)
        result.thread.start()
        return result


class Result:
    value: object = None
    error: "BaseException | None" = None
    thread: threading.Thread

    def get(self) -> object:
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "client call did not return"
        if self.error is not None:
            raise self.error
        return self.value


def embed_answer(request: pb.Request, values: List[float]) -> pb.Response:
    answer = response(request.id)
    answer.embed.dimensions = len(values)
    answer.embed.embeddings.add().values.extend(values)
    answer.usage.prompt_tokens = 3
    answer.usage.total_tokens = 3
    answer.timing.queue_ms = 0.5
    answer.timing.compute_ms = 2.0
    answer.timing.total_ms = 3.0
    return answer


class EmbedAndUnaryCallsTest(ClientTestCase):
    def test_embed_sends_the_fields_and_returns_the_embeddings(self) -> None:
        call = self.in_thread(
            self.client.embed, "minilm", ["hello", "world"], truncate=True, priority=2,
            deadline_ms=500,
        )
        request = self.peer_conn.recv_request()
        self.assertEqual(request.WhichOneof("kind"), "embed")
        self.assertEqual(request.embed.model, "minilm")
        self.assertEqual(list(request.embed.inputs), ["hello", "world"])
        self.assertFalse(request.embed.HasField("normalize"), "unset normalize must stay unset")
        self.assertTrue(request.embed.truncate)
        self.assertEqual(request.embed.priority, 2)
        self.assertEqual(request.embed.deadline_ms, 500)

        answer = response(request.id)
        answer.embed.dimensions = 2
        answer.embed.embeddings.add().values.extend([0.5, 0.25])
        answer.embed.embeddings.add().values.extend([-1.0, 0.0])
        answer.usage.prompt_tokens = 6
        answer.timing.total_ms = 4.5
        self.peer_conn.send(answer)

        result = call.get()
        self.assertEqual(result.embeddings, [[0.5, 0.25], [-1.0, 0.0]])
        self.assertEqual(result.dimensions, 2)
        self.assertEqual(result.usage.prompt_tokens, 6)
        self.assertEqual(result.timing.total_ms, 4.5)

    def test_explicit_normalize_false_is_sent(self) -> None:
        call = self.in_thread(self.client.embed, "minilm", "one string", normalize=False)
        request = self.peer_conn.recv_request()
        self.assertTrue(request.embed.HasField("normalize"))
        self.assertFalse(request.embed.normalize)
        self.assertEqual(list(request.embed.inputs), ["one string"])
        self.peer_conn.send(embed_answer(request, [1.0]))
        self.assertEqual(call.get().embeddings, [[1.0]])

    def test_request_ids_are_a_per_connection_counter(self) -> None:
        seen: List[int] = []
        for _ in range(3):
            call = self.in_thread(self.client.health)
            request = self.peer_conn.recv_request()
            seen.append(request.id)
            answer = response(request.id)
            answer.health.ready = True
            answer.health.status = "serving"
            self.peer_conn.send(answer)
            health = call.get()
            self.assertTrue(health.ready)
            self.assertEqual(health.status, "serving")
        self.assertEqual(seen, [seen[0], seen[0] + 1, seen[0] + 2])
        self.assertGreater(seen[0], 0, "id 0 is the proto default and would be ambiguous")

    def test_rerank(self) -> None:
        call = self.in_thread(
            self.client.rerank, "rerank-demo", "q", ["d0", "d1", "d2"], top_n=2,
            return_documents=True, raw_scores=True,
        )
        request = self.peer_conn.recv_request()
        self.assertEqual(request.rerank.query, "q")
        self.assertEqual(list(request.rerank.documents), ["d0", "d1", "d2"])
        self.assertEqual(request.rerank.top_n, 2)
        self.assertTrue(request.rerank.return_documents)
        self.assertTrue(request.rerank.raw_scores)
        answer = response(request.id)
        answer.rerank.results.add(index=2, score=0.75, document="d2")
        answer.rerank.results.add(index=0, score=0.25, document="d0")
        self.peer_conn.send(answer)
        reranked = call.get()
        self.assertEqual([r.index for r in reranked.results], [2, 0])
        self.assertEqual(reranked[0].document, "d2")
        self.assertEqual(reranked[0].score, 0.75)
        self.assertEqual(len(reranked), 2)

    def test_tokenize_and_detokenize(self) -> None:
        call = self.in_thread(
            self.client.tokenize, "qwen3-demo", "hi there", add_special_tokens=False,
            return_tokens=True,
        )
        request = self.peer_conn.recv_request()
        self.assertTrue(request.tokenize.HasField("add_special_tokens"))
        self.assertFalse(request.tokenize.add_special_tokens)
        self.assertTrue(request.tokenize.return_tokens)
        answer = response(request.id)
        answer.tokenize.ids.extend([5, 6])
        answer.tokenize.tokens.extend(["hi", " there"])
        self.peer_conn.send(answer)
        tokens = call.get()
        self.assertEqual(tokens.ids, [5, 6])
        self.assertEqual(tokens.tokens, ["hi", " there"])

        call = self.in_thread(self.client.detokenize, "qwen3-demo", [5, 6], skip_special_tokens=True)
        request = self.peer_conn.recv_request()
        self.assertEqual(list(request.detokenize.ids), [5, 6])
        self.assertTrue(request.detokenize.skip_special_tokens)
        answer = response(request.id)
        answer.detokenize.text = "hi there"
        self.peer_conn.send(answer)
        self.assertEqual(call.get(), "hi there")

    def test_models_status_and_admin_calls(self) -> None:
        call = self.in_thread(self.client.models)
        request = self.peer_conn.recv_request()
        self.assertEqual(request.WhichOneof("kind"), "list_models")
        answer = response(request.id)
        answer.list_models.models.add(
            name="minilm", task="embed", state="ready", weights_bytes=90_000_000, dimensions=384
        )
        self.peer_conn.send(answer)
        (model,) = call.get()
        self.assertEqual((model.name, model.task, model.state), ("minilm", "embed", "ready"))
        self.assertEqual(model.dimensions, 384)

        call = self.in_thread(self.client.models)
        request = self.peer_conn.recv_request()
        self.peer_conn.send(response(request.id))  # no models: an empty, kind-less response
        self.assertEqual(call.get(), [])

        call = self.in_thread(self.client.status)
        request = self.peer_conn.recv_request()
        self.assertEqual(request.WhichOneof("kind"), "status")
        answer = response(request.id)
        answer.status.version = "0.1"
        answer.status.mem_available_bytes = 1 << 30
        answer.status.models.add(name="qwen3-demo", running=2, waiting=1)
        self.peer_conn.send(answer)
        status = call.get()
        self.assertEqual(status.version, "0.1")
        self.assertEqual(status.mem_available_bytes, 1 << 30)
        self.assertEqual(status.models[0].running, 2)

        for method, args, kind in (
            (self.client.load, ("qwen3-demo", "/models/q"), "load"),
            (self.client.unload, ("qwen3-demo",), "unload"),
            (self.client.reload, (), "reload"),
        ):
            call = self.in_thread(method, *args)
            request = self.peer_conn.recv_request()
            self.assertEqual(request.WhichOneof("kind"), kind)
            answer = response(request.id)
            answer.admin.message = f"did {kind}"
            self.peer_conn.send(answer)
            self.assertEqual(call.get(), f"did {kind}")
            if kind == "load":
                self.assertEqual(request.load.path, "/models/q")

    def test_cancel_returns_whether_the_daemon_cancelled(self) -> None:
        call = self.in_thread(self.client.cancel, 77)
        request = self.peer_conn.recv_request()
        self.assertEqual(request.cancel.target_id, 77)
        answer = response(request.id)
        answer.cancel.cancelled = True
        self.peer_conn.send(answer)
        self.assertIs(call.get(), True)


class ErrorsTest(ClientTestCase):
    def test_error_response_raises_with_code_message_and_id(self) -> None:
        call = self.in_thread(self.client.embed, "nope", ["x"])
        request = self.peer_conn.recv_request()
        self.peer_conn.send(
            error_response(request.id, pb.NOT_FOUND, "no model 'nope'; configured: minilm")
        )
        with self.assertRaises(SparkdError) as raised:
            call.get()
        self.assertEqual(raised.exception.code, "NOT_FOUND")
        self.assertEqual(raised.exception.message, "no model 'nope'; configured: minilm")
        self.assertEqual(raised.exception.request_id, request.id)
        self.assertIn("NOT_FOUND", str(raised.exception))

    def test_unknown_error_code_is_kept_recognisable(self) -> None:
        call = self.in_thread(self.client.health)
        request = self.peer_conn.recv_request()
        self.peer_conn.send(error_response(request.id, 99, "from the future"))
        with self.assertRaises(SparkdError) as raised:
            call.get()
        self.assertEqual(raised.exception.code, "UNKNOWN")
        self.assertIn("99", raised.exception.message)

    def test_response_of_the_wrong_kind_is_a_protocol_error(self) -> None:
        call = self.in_thread(self.client.embed, "minilm", ["x"])
        request = self.peer_conn.recv_request()
        answer = response(request.id)
        answer.rerank.results.add(index=0, score=1.0)
        self.peer_conn.send(answer)
        with self.assertRaises(SparkdError) as raised:
            call.get()
        self.assertEqual(raised.exception.code, "INTERNAL")

    def test_connection_still_usable_after_an_error(self) -> None:
        call = self.in_thread(self.client.embed, "nope", ["x"])
        request = self.peer_conn.recv_request()
        self.peer_conn.send(error_response(request.id, pb.INVALID_ARGUMENT, "bad"))
        with self.assertRaises(SparkdError):
            call.get()
        call = self.in_thread(self.client.embed, "minilm", ["x"])
        request = self.peer_conn.recv_request()
        self.peer_conn.send(embed_answer(request, [2.0]))
        self.assertEqual(call.get().embeddings, [[2.0]])

    def test_generate_needs_exactly_one_of_prompt_and_messages(self) -> None:
        with self.assertRaises(SparkdError) as raised:
            self.client.generate("qwen3-demo")
        self.assertEqual(raised.exception.code, "INVALID_ARGUMENT")
        with self.assertRaises(SparkdError):
            self.client.generate("qwen3-demo", prompt="a", messages=[])
        # Nothing was sent for either: the next request the peer sees is this one.
        call = self.in_thread(self.client.health)
        request = self.peer_conn.recv_request()
        self.assertEqual(request.WhichOneof("kind"), "health")
        self.peer_conn.send(response(request.id))
        call.get()


class ConcurrencyAndFramingTest(ClientTestCase):
    def test_out_of_order_responses_reach_the_right_threads(self) -> None:
        thread_count = 8
        calls = [
            self.in_thread(self.client.embed, "minilm", [f"input {index}"])
            for index in range(thread_count)
        ]
        requests = self.peer_conn.recv_requests(thread_count)
        self.assertEqual(len({r.id for r in requests}), thread_count, "ids must be unique")
        # Answer newest first, each with a value derived from its own input.
        for request in reversed(requests):
            index = float(request.embed.inputs[0].split()[1])
            self.peer_conn.send(embed_answer(request, [index, -index]))
        for index, call in enumerate(calls):
            self.assertEqual(call.get().embeddings, [[float(index), -float(index)]])

    def test_interleaved_stream_and_unary_responses(self) -> None:
        stream = self.client.generate_stream("qwen3-demo", prompt="p")
        stream_request = self.peer_conn.recv_request()
        call = self.in_thread(self.client.embed, "minilm", ["x"])
        embed_request = self.peer_conn.recv_request()
        first = response(stream_request.id, final=False)
        first.generate.text = "a"
        self.peer_conn.send(first)
        self.peer_conn.send(embed_answer(embed_request, [3.0]))
        last = response(stream_request.id)
        last.generate.text = "b"
        last.generate.finish_reason = "stop"
        self.peer_conn.send(last)
        self.assertEqual([chunk.text for chunk in stream], ["a", "b"])
        self.assertEqual(call.get().embeddings, [[3.0]])

    def test_frame_split_across_writes(self) -> None:
        call = self.in_thread(self.client.embed, "minilm", ["x"])
        request = self.peer_conn.recv_request()
        answer = embed_answer(request, [0.125] * 64)
        self.peer_conn.send_in_pieces(PeerConnection.frame(answer), piece_bytes=3)
        self.assertEqual(call.get().embeddings, [[0.125] * 64])

    def test_two_frames_in_one_write(self) -> None:
        first = self.in_thread(self.client.embed, "minilm", ["a"])
        request_a = self.peer_conn.recv_request()
        second = self.in_thread(self.client.embed, "minilm", ["b"])
        request_b = self.peer_conn.recv_request()
        self.peer_conn.send_raw(
            PeerConnection.frame(embed_answer(request_b, [2.0]))
            + PeerConnection.frame(embed_answer(request_a, [1.0]))
        )
        self.assertEqual(first.get().embeddings, [[1.0]])
        self.assertEqual(second.get().embeddings, [[2.0]])

    def test_responses_for_unknown_ids_are_ignored(self) -> None:
        call = self.in_thread(self.client.embed, "minilm", ["x"])
        request = self.peer_conn.recv_request()
        stray = response(request.id + 1000)
        stray.embed.dimensions = 1
        self.peer_conn.send(stray)
        self.peer_conn.send(embed_answer(request, [4.0]))
        self.assertEqual(call.get().embeddings, [[4.0]])


class StreamingTest(ClientTestCase):
    def _send_chunks(self, request_id: int, texts: List[str], final_reason: str) -> None:
        for index, text in enumerate(texts):
            final = index == len(texts) - 1
            chunk = response(request_id, final=final)
            chunk.generate.text = text
            chunk.generate.token_ids.append(100 + index)
            if final:
                chunk.generate.finish_reason = final_reason
                chunk.usage.prompt_tokens = 4
                chunk.usage.completion_tokens = len(texts)
                chunk.timing.ttft_ms = 1.5
            self.peer_conn.send(chunk)

    def test_stream_yields_chunks_until_final(self) -> None:
        stream = self.client.generate_stream(
            "qwen3-demo",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=16,
            temperature=0.0,
            top_k=40,
            seed=7,
            stop="\n\n",
            stop_token_ids=[2],
            logit_bias={5: -1.5},
            logprobs=2,
        )
        request = self.peer_conn.recv_request()
        generate = request.generate
        self.assertTrue(generate.stream)
        self.assertEqual(generate.WhichOneof("input"), "chat")
        self.assertEqual(
            [(m.role, m.content) for m in generate.chat.messages], [("user", "hi")]
        )
        self.assertEqual(generate.max_tokens, 16)
        self.assertTrue(generate.sampling.HasField("temperature"), "temperature 0 = greedy")
        self.assertEqual(generate.sampling.temperature, 0.0)
        self.assertFalse(generate.sampling.HasField("top_p"))
        self.assertEqual(generate.sampling.top_k, 40)
        self.assertEqual(generate.sampling.seed, 7)
        self.assertEqual(generate.sampling.logprobs, 2)
        self.assertEqual(
            [(b.token_id, b.bias) for b in generate.sampling.logit_bias], [(5, -1.5)]
        )
        self.assertEqual(list(generate.stop), ["\n\n"])
        self.assertEqual(list(generate.stop_token_ids), [2])

        self._send_chunks(request.id, ["Hel", "lo", "!"], "stop")
        chunks = list(stream)
        self.assertEqual([c.text for c in chunks], ["Hel", "lo", "!"])
        self.assertEqual([c.token_ids for c in chunks], [[100], [101], [102]])
        self.assertEqual([c.final for c in chunks], [False, False, True])
        self.assertEqual(chunks[-1].finish_reason, "stop")
        self.assertIsNone(chunks[0].usage)
        self.assertEqual(stream.finish_reason, "stop")
        assert stream.usage is not None and stream.timing is not None
        self.assertEqual(stream.usage.completion_tokens, 3)
        self.assertEqual(stream.timing.ttft_ms, 1.5)

    def test_generate_returns_the_joined_generation(self) -> None:
        call = self.in_thread(self.client.generate, "qwen3-demo", prompt="Once")
        request = self.peer_conn.recv_request()
        self.assertFalse(request.generate.stream)
        self.assertEqual(request.generate.prompt, "Once")
        self.assertFalse(request.generate.HasField("sampling"), "all-default sampling stays unset")
        self._send_chunks(request.id, [" upon", " a time"], "length")
        generation = call.get()
        self.assertEqual(generation.text, " upon a time")
        self.assertEqual(generation.token_ids, [100, 101])
        self.assertEqual(generation.finish_reason, "length")
        self.assertEqual(generation.usage.prompt_tokens, 4)

    def test_chat_with_tools_sends_them_and_joins_reasoning_and_tool_calls(self) -> None:
        messages = [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "reasoning_content": "use the tool",
             "tool_calls": [{"id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "-3C"},
        ]
        tools = [{"type": "function", "function": {"name": "get_weather"}}]
        call = self.in_thread(self.client.generate, "qwen3-demo", messages=messages, tools=tools,
                              template_variables={"enable_thinking": True})
        request = self.peer_conn.recv_request()
        chat = request.generate.chat
        self.assertEqual(chat.messages[1].content, "")
        self.assertEqual(chat.messages[1].reasoning, "use the tool")
        self.assertEqual(chat.messages[1].tool_calls[0].name, "get_weather")
        self.assertEqual(json.loads(chat.messages[1].tool_calls[0].arguments), {"city": "Oslo"})
        self.assertEqual(chat.messages[2].tool_call_id, "call_1")
        self.assertEqual(chat.messages[2].name, "get_weather")
        self.assertEqual(json.loads(chat.tools_json), tools)
        self.assertEqual(json.loads(chat.template_variables_json), {"enable_thinking": True})

        first = response(request.id, final=False)
        first.generate.reasoning = "The user "
        self.peer_conn.send(first)
        last = response(request.id, final=True)
        last.generate.reasoning = "asks again."
        tool_call = last.generate.tool_calls.add()
        tool_call.id, tool_call.name, tool_call.arguments = "call_2", "get_weather", "{}"
        last.generate.finish_reason = "tool_calls"
        self.peer_conn.send(last)
        generation = call.get()
        self.assertEqual(generation.text, "")
        self.assertEqual(generation.reasoning, "The user asks again.")
        self.assertEqual(generation.tool_calls, [sparkd.ToolCall("call_2", "get_weather", "{}")])
        self.assertEqual(generation.finish_reason, "tool_calls")

    def test_error_in_the_middle_of_a_stream(self) -> None:
        stream = self.client.generate_stream("qwen3-demo", prompt="p")
        request = self.peer_conn.recv_request()
        chunk = response(request.id, final=False)
        chunk.generate.text = "partial"
        self.peer_conn.send(chunk)
        self.peer_conn.send(
            error_response(request.id, pb.RESOURCE_EXHAUSTED, "KV needs 2 GiB, 1 GiB free")
        )
        self.assertEqual(next(stream).text, "partial")
        with self.assertRaises(SparkdError) as raised:
            next(stream)
        self.assertEqual(raised.exception.code, "RESOURCE_EXHAUSTED")
        self.assertEqual(list(stream), [], "a failed stream is over")

    def _expect_cancel_of(self, target_id: int) -> None:
        request = self.peer_conn.recv_request()
        self.assertEqual(request.WhichOneof("kind"), "cancel")
        self.assertEqual(request.cancel.target_id, target_id)

    def _start_stream_and_read_one_chunk(self):  # type: ignore[no-untyped-def]
        stream = self.client.generate_stream("qwen3-demo", prompt="p")
        request = self.peer_conn.recv_request()
        chunk = response(request.id, final=False)
        chunk.generate.text = "first"
        self.peer_conn.send(chunk)
        self.assertEqual(next(stream).text, "first")
        return stream, request

    def test_close_before_the_end_sends_cancel(self) -> None:
        stream, request = self._start_stream_and_read_one_chunk()
        stream.close()
        self._expect_cancel_of(request.id)
        # Chunks the daemon had already sent are dropped, and the connection stays usable.
        late = response(request.id, final=False)
        late.generate.text = "late"
        self.peer_conn.send(late)
        call = self.in_thread(self.client.embed, "minilm", ["x"])
        embed_request = self.peer_conn.recv_request()
        self.peer_conn.send(embed_answer(embed_request, [1.0]))
        self.assertEqual(call.get().embeddings, [[1.0]])
        self.assertEqual(list(stream), [])

    def test_leaving_a_with_block_early_sends_cancel(self) -> None:
        stream, request = self._start_stream_and_read_one_chunk()
        with stream:
            pass
        self._expect_cancel_of(request.id)

    def test_break_out_of_a_for_loop_sends_cancel(self) -> None:
        def play_daemon() -> "tuple[pb.Request, pb.Request]":
            request = self.peer_conn.recv_request()
            chunk = response(request.id, final=False)
            chunk.generate.text = "first"
            self.peer_conn.send(chunk)
            return request, self.peer_conn.recv_request()

        daemon = self.in_thread(play_daemon)
        texts: List[str] = []
        for chunk in self.client.generate_stream("qwen3-demo", prompt="p"):
            texts.append(chunk.text)
            break  # the last reference to the stream goes here
        gc.collect()  # CPython has finalised it already; other interpreters need the nudge
        self.assertEqual(texts, ["first"])
        request, cancel = daemon.get()  # type: ignore[misc]
        self.assertEqual(cancel.WhichOneof("kind"), "cancel")
        self.assertEqual(cancel.cancel.target_id, request.id)

    def test_finished_stream_does_not_send_cancel(self) -> None:
        stream = self.client.generate_stream("qwen3-demo", prompt="p")
        request = self.peer_conn.recv_request()
        self._send_chunks(request.id, ["done"], "stop")
        self.assertEqual(len(list(stream)), 1)
        stream.close()
        # The next frame the peer sees must be the health request, not a cancel.
        call = self.in_thread(self.client.health)
        self.assertEqual(self.peer_conn.recv_request().WhichOneof("kind"), "health")
        self.peer_conn.close()
        with self.assertRaises(SparkdError):
            call.get()


class ConnectionLossTest(ClientTestCase):
    def test_every_waiting_call_raises_unavailable(self) -> None:
        calls = [self.in_thread(self.client.embed, "minilm", [str(i)]) for i in range(4)]
        self.peer_conn.recv_requests(4)
        self.peer_conn.close()
        for call in calls:
            with self.assertRaises(SparkdError) as raised:
                call.get()
            self.assertEqual(raised.exception.code, "UNAVAILABLE")
            self.assertIn(self.peer.socket_path, raised.exception.message)
        # The client is not given up on: the next call connects afresh.
        self.assertFalse(self.client.closed)
        fresh_call = self.in_thread(self.client.health)
        fresh = self.peer.accept()
        fresh.send(response(fresh.recv_request().id))
        fresh_call.get()

    def test_connection_closed_mid_frame(self) -> None:
        call = self.in_thread(self.client.embed, "minilm", ["x"])
        request = self.peer_conn.recv_request()
        frame = PeerConnection.frame(embed_answer(request, [1.0, 2.0]))
        self.peer_conn.send_raw(frame[: len(frame) // 2])
        self.peer_conn.close()
        with self.assertRaises(SparkdError) as raised:
            call.get()
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertIn("middle of a frame", raised.exception.message)

    def test_stream_interrupted_by_connection_loss(self) -> None:
        stream = self.client.generate_stream("qwen3-demo", prompt="p")
        request = self.peer_conn.recv_request()
        chunk = response(request.id, final=False)
        chunk.generate.text = "so far"
        self.peer_conn.send(chunk)
        self.assertEqual(next(stream).text, "so far")
        self.peer_conn.close()
        with self.assertRaises(SparkdError) as raised:
            next(stream)
        self.assertEqual(raised.exception.code, "UNAVAILABLE")

    def test_garbage_frame_is_a_protocol_error(self) -> None:
        call = self.in_thread(self.client.health)
        self.peer_conn.recv_request()
        self.peer_conn.send_raw(b"\x03\x00\x00\x00\xff\xff\xff")  # not a valid Response
        with self.assertRaises(SparkdError) as raised:
            call.get()
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertIn("protocol error", raised.exception.message)

    def test_close_fails_waiting_calls_and_tells_the_peer(self) -> None:
        call = self.in_thread(self.client.health)
        self.peer_conn.recv_request()
        self.client.close()
        with self.assertRaises(SparkdError) as raised:
            call.get()
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertIn("client was closed", raised.exception.message)
        self.assertTrue(self.peer_conn.expect_eof())


# What the daemon says before it drops a connection (api/server/server.cpp's wording).
TOO_MANY_CONNECTIONS = (
    "sparkd already serves 256 connections (server.max_connections); close idle connections "
    "or raise the limit"
)
IDLE = "closing the connection: idle for 300 s (server.idle_timeout_s); connect again to send more"


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class DaemonReasonTest(ClientTestCase):
    """The daemon's id-0 error before it closes a connection is what the stranded calls raise."""

    def test_waiting_calls_raise_the_daemons_code_and_message(self) -> None:
        calls = [self.in_thread(self.client.embed, "minilm", [str(i)]) for i in range(3)]
        requests = self.peer_conn.recv_requests(3)
        self.peer_conn.close_with_error(pb.RESOURCE_EXHAUSTED, TOO_MANY_CONNECTIONS)
        ids = sorted(request.id for request in requests)
        raised_ids = []
        for call in calls:
            with self.assertRaises(SparkdError) as raised:
                call.get()
            self.assertEqual(raised.exception.code, "RESOURCE_EXHAUSTED")
            self.assertEqual(raised.exception.message, TOO_MANY_CONNECTIONS)
            raised_ids.append(raised.exception.request_id)
        self.assertEqual(sorted(raised_ids), ids)
        # Those callers heard why; the next call opens a fresh connection.
        self.assertFalse(self.client.closed)
        fresh_call = self.in_thread(self.client.health)
        fresh = self.peer.accept()
        fresh.send(response(fresh.recv_request().id))
        fresh_call.get()

    def test_send_failed_on_an_oversized_frame_raises_the_daemons_reason(self) -> None:
        # The daemon reads the header, refuses the length and closes while the client is
        # still writing: the send fails (EPIPE or ECONNRESET) with the error frame unread.
        call = self.in_thread(self.client.embed, "minilm", ["x" * 20_000_000])
        length = self.peer_conn.recv_frame_length()
        message = f"frame of {length} bytes exceeds max_frame_bytes 16777216"
        self.peer_conn.close_with_error(pb.RESOURCE_EXHAUSTED, message)
        with self.assertRaises(SparkdError) as raised:
            call.get()
        self.assertEqual(raised.exception.code, "RESOURCE_EXHAUSTED")
        self.assertEqual(raised.exception.message, message)
        self.assertEqual(raised.exception.request_id, 1)

    def test_send_failed_without_a_reason_is_unavailable(self) -> None:
        call = self.in_thread(self.client.embed, "minilm", ["x" * 20_000_000])
        self.peer_conn.recv_frame_length()
        self.peer_conn.close()
        with self.assertRaises(SparkdError) as raised:
            call.get()
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertIn(
            f"connection to sparkd at {self.peer.socket_path} lost", raised.exception.message
        )

    def test_an_id0_error_on_a_connection_that_goes_on_is_not_a_loss(self) -> None:
        call = self.in_thread(self.client.health)
        request = self.peer_conn.recv_request()
        # About some frame so malformed that no id could be read; the connection goes on.
        self.peer_conn.send(error_response(0, pb.INVALID_ARGUMENT, "the frame is not a Request"))
        answer = response(request.id)
        answer.health.ready = True
        self.peer_conn.send(answer)
        self.assertTrue(call.get().ready)

    def test_a_refused_duplicate_id_does_not_end_the_call(self) -> None:
        call = self.in_thread(self.client.embed, "minilm", ["x"])
        request = self.peer_conn.recv_request()
        refusal = error_response(request.id, pb.ALREADY_EXISTS, "request id 1 is in flight")
        refusal.final = False
        self.peer_conn.send(refusal)
        self.peer_conn.send(embed_answer(request, [5.0]))
        self.assertEqual(call.get().embeddings, [[5.0]])

    def test_a_refused_duplicate_id_does_not_end_a_stream(self) -> None:
        stream = self.client.generate_stream("qwen3-demo", prompt="p")
        request = self.peer_conn.recv_request()
        refusal = error_response(request.id, pb.ALREADY_EXISTS, "request id 1 is in flight")
        refusal.final = False
        self.peer_conn.send(refusal)
        last = response(request.id)
        last.generate.text = "done"
        last.generate.finish_reason = "stop"
        self.peer_conn.send(last)
        self.assertEqual([chunk.text for chunk in stream], ["done"])
        self.assertEqual(stream.finish_reason, "stop")


class ReconnectTest(ClientTestCase):
    def _wait_until_lost(self) -> None:
        wait_until(lambda: self.client._connection.end is not None, "the client to see the loss")

    def _health_on_a_fresh_connection(self) -> PeerConnection:
        call = self.in_thread(self.client.health)
        fresh = self.peer.accept()
        request = fresh.recv_request()
        self.assertEqual(request.WhichOneof("kind"), "health")
        answer = response(request.id)
        answer.health.ready = True
        fresh.send(answer)
        self.assertTrue(call.get().ready)
        return fresh

    def test_idle_connection_closed_by_the_daemon_is_reopened(self) -> None:
        self.peer_conn.close_with_error(pb.UNAVAILABLE, IDLE)
        self._wait_until_lost()
        self.assertFalse(self.client.closed, "an idle loss is not the end of the client")
        fresh = self._health_on_a_fresh_connection()
        # Later calls use the new connection; no third one is opened.
        call = self.in_thread(self.client.embed, "minilm", ["x"])
        fresh.send(embed_answer(fresh.recv_request(), [1.0]))
        self.assertEqual(call.get().embeddings, [[1.0]])
        self.assertTrue(self.peer.expect_no_connection(0.1))

    def test_daemon_restarted_between_calls(self) -> None:
        call = self.in_thread(self.client.health)
        request = self.peer_conn.recv_request()
        self.peer_conn.send(response(request.id))
        call.get()
        self.peer_conn.close()  # no reason given: the daemon went away
        self._wait_until_lost()
        self._health_on_a_fresh_connection()

    def test_a_failed_reconnect_raises_unavailable_with_the_previous_reason(self) -> None:
        self.peer.stop_listening()
        self.peer_conn.close_with_error(pb.UNAVAILABLE, IDLE)
        self._wait_until_lost()
        with self.assertRaises(SparkdError) as raised:
            self.client.health()
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertIn(
            f"cannot connect to sparkd at {self.peer.socket_path}", raised.exception.message
        )
        self.assertIn(IDLE, raised.exception.message)
        # The client is not given up on: the next call tries to reconnect again.
        with self.assertRaises(SparkdError) as raised:
            self.client.health()
        self.assertIn("cannot connect", raised.exception.message)
        self.assertFalse(self.client.closed)

    def test_calls_in_flight_fail_and_only_the_next_call_reconnects(self) -> None:
        call = self.in_thread(self.client.health)
        self.peer_conn.recv_request()
        self.peer_conn.close()
        with self.assertRaises(SparkdError) as raised:
            call.get()
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        # Nothing is retried on its own: no connection until the next call.
        self.assertTrue(self.peer.expect_no_connection())
        self._health_on_a_fresh_connection()

    def test_nothing_reconnects_after_close(self) -> None:
        self.client.close()
        with self.assertRaises(SparkdError) as raised:
            self.client.health()
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertIn("client was closed", raised.exception.message)
        self.assertTrue(self.peer.expect_no_connection())
        self.assertTrue(self.client.closed)


class ArgumentRangeTest(ClientTestCase):
    """Numbers that cannot fit their wire type are refused before anything is sent."""

    U32 = "[0, 4294967295]"
    I32 = "[-2147483648, 2147483647]"
    U64 = "[0, 18446744073709551615]"

    def _assert_refused(self, call: Callable[[], Any], message: str) -> None:
        with self.assertRaises(SparkdError) as raised:
            call()
        self.assertEqual(raised.exception.code, "INVALID_ARGUMENT")
        self.assertEqual(raised.exception.message, message)
        self.assertIsNone(raised.exception.request_id)

    def _assert_nothing_was_sent(self) -> None:
        call = self.in_thread(self.client.health)
        self.assertEqual(self.peer_conn.recv_request().WhichOneof("kind"), "health")
        self.peer_conn.send(response(1))  # ids start at 1: nothing before took one
        call.get()

    def test_out_of_range_numbers_name_the_field(self) -> None:
        c = self.client
        gen: Dict[str, Any] = {"prompt": "p"}
        cases: List["tuple[Callable[[], Any], str]"] = [
            (lambda: c.generate("g", max_tokens=-5, **gen),
             f"generate.max_tokens must be in {self.U32}, got -5"),
            (lambda: c.generate("g", max_tokens=2**32, **gen),
             f"generate.max_tokens must be in {self.U32}, got 4294967296"),
            (lambda: c.generate("g", seed=-1, **gen),
             f"generate.sampling.seed must be in {self.U64}, got -1"),
            (lambda: c.generate("g", seed=2**64, **gen),
             f"generate.sampling.seed must be in {self.U64}, got {2**64}"),
            (lambda: c.generate("g", priority=2**31, **gen),
             f"generate.priority must be in {self.I32}, got 2147483648"),
            (lambda: c.generate("g", deadline_ms=-1, **gen),
             f"generate.deadline_ms must be in {self.U32}, got -1"),
            (lambda: c.generate("g", top_k=-(2**31) - 1, **gen),
             f"generate.sampling.top_k must be in {self.I32}, got -2147483649"),
            (lambda: c.generate("g", logprobs=-1, **gen),
             f"generate.sampling.logprobs must be in {self.U32}, got -1"),
            (lambda: c.generate("g", stop_token_ids=[1, 2, 2**31], **gen),
             f"generate.stop_token_ids[2] must be in {self.I32}, got 2147483648"),
            (lambda: c.generate("g", logit_bias={2**40: 1.0}, **gen),
             f"generate.sampling.logit_bias[0].token_id must be in {self.I32}, got {2**40}"),
            (lambda: c.generate_stream("g", max_tokens=-5, **gen),
             f"generate.max_tokens must be in {self.U32}, got -5"),
            (lambda: c.embed("m", ["x"], deadline_ms=-1),
             f"embed.deadline_ms must be in {self.U32}, got -1"),
            (lambda: c.embed("m", ["x"], priority=-(2**31) - 1),
             f"embed.priority must be in {self.I32}, got -2147483649"),
            (lambda: c.rerank("r", "q", ["d"], top_n=-1),
             f"rerank.top_n must be in {self.U32}, got -1"),
            (lambda: c.rerank("r", "q", ["d"], deadline_ms=2**32),
             f"rerank.deadline_ms must be in {self.U32}, got 4294967296"),
            (lambda: c.detokenize("g", [1, 2**31]),
             f"detokenize.ids[1] must be in {self.I32}, got 2147483648"),
            (lambda: c.cancel(-1), f"cancel.target_id must be in {self.U64}, got -1"),
        ]
        for call, message in cases:
            with self.subTest(message):
                self._assert_refused(call, message)
        self._assert_nothing_was_sent()

    def test_wrong_types_name_the_field(self) -> None:
        c = self.client
        cases: List["tuple[Callable[[], Any], str]"] = [
            (lambda: c.generate("g", prompt="p", max_tokens="16"),
             "generate.max_tokens must be an integer, got '16' (str)"),
            (lambda: c.generate("g", prompt="p", max_tokens=1.5),
             "generate.max_tokens must be an integer, got 1.5 (float)"),
            (lambda: c.detokenize("g", 7), "detokenize.ids must be a list, got int"),
            (lambda: c.generate("g", prompt="p", logit_bias=[(1, 2.0)]),
             "generate.sampling.logit_bias must be a mapping of token id to bias, got list"),
        ]
        for call, message in cases:
            with self.subTest(message):
                self._assert_refused(call, message)
        # protobuf's own type errors, wrapped with the field's name.
        for call, path in (
            (lambda: c.embed(5, ["x"]), "embed.model: "),
            (lambda: c.embed("m", ["x", 5]), "embed.inputs[1]: "),
            (lambda: c.generate("g", prompt="p", temperature="hot"),
             "generate.sampling.temperature: "),
            (lambda: c.generate("g", prompt="p", logit_bias={1: "x"}),
             "generate.sampling.logit_bias[0].bias: "),
            (lambda: c.tokenize("g", "t", return_tokens="yes"), "tokenize.return_tokens: "),
            (lambda: c.load("m", residency=1), "load.residency: "),
        ):
            with self.subTest(path):
                with self.assertRaises(SparkdError) as raised:
                    call()
                self.assertEqual(raised.exception.code, "INVALID_ARGUMENT")
                self.assertTrue(raised.exception.message.startswith(path), raised.exception.message)
        with self.assertRaises(SparkdError) as raised:
            c.generate("g", messages=[{"content": "no role"}])
        self.assertIn(
            "generate.chat.messages[0] must have a role and a content", raised.exception.message
        )
        self._assert_nothing_was_sent()

    def test_a_request_over_the_clients_frame_limit_is_a_sparkd_error(self) -> None:
        with mock.patch("sparkd._framing.MAX_FRAME_BYTES", 1000):
            with self.assertRaises(SparkdError) as raised:
                self.client.embed("minilm", ["x" * 2000])
        self.assertEqual(raised.exception.code, "RESOURCE_EXHAUSTED")
        self.assertIn("exceeds the client's limit of 1000 bytes", raised.exception.message)
        # Nothing was sent and nothing is left waiting: the connection goes on.
        call = self.in_thread(self.client.health)
        request = self.peer_conn.recv_request()
        self.assertEqual(request.WhichOneof("kind"), "health")
        self.peer_conn.send(response(request.id))
        call.get()
        self.assertEqual(self.client._connection.pending, {})

    def test_in_range_values_go_to_the_daemon_unchanged(self) -> None:
        # The daemon judges these (top_k must be >= -1, ids >= 0); the client only checks the
        # wire type, so they are sent as given.
        stream = self.client.generate_stream(
            "g", prompt="p", top_k=-5, max_tokens=2**32 - 1, seed=2**64 - 1, priority=-(2**31),
            stop_token_ids=[-1], logit_bias={-3: 1.0},
        )
        generate = self.peer_conn.recv_request().generate
        self.assertEqual(generate.sampling.top_k, -5)
        self.assertEqual(generate.max_tokens, 2**32 - 1)
        self.assertEqual(generate.sampling.seed, 2**64 - 1)
        self.assertEqual(generate.priority, -(2**31))
        self.assertEqual(list(generate.stop_token_ids), [-1])
        self.assertEqual(generate.sampling.logit_bias[0].token_id, -3)
        stream.close()


class AdminAndTypesTest(ClientTestCase):
    def _answer_admin(self) -> pb.Request:
        request = self.peer_conn.recv_request()
        answer = response(request.id)
        answer.admin.message = "loaded"
        self.peer_conn.send(answer)
        return request

    def test_load_makes_a_relative_path_absolute_and_sends_residency(self) -> None:
        here = os.getcwd()
        with tempfile.TemporaryDirectory() as directory:
            os.chdir(directory)
            try:
                callers_directory = os.getcwd()
                call = self.in_thread(self.client.load, "qwen3", "models/qwen3", residency="pinned")
                request = self._answer_admin()
                self.assertEqual(call.get(), "loaded")
            finally:
                os.chdir(here)
        self.assertEqual(request.load.path, os.path.join(callers_directory, "models", "qwen3"))
        self.assertEqual(request.load.name, "qwen3")
        self.assertEqual(request.load.residency, "pinned")

    def test_load_passes_store_references_as_they_are(self) -> None:
        for reference in ("ollama:qwen2.5-coder:1.5b", "hf:Qwen/Qwen3-0.6B"):
            call = self.in_thread(self.client.load, "qwen", reference)
            request = self._answer_admin()
            call.get()
            self.assertEqual(request.load.path, reference)

    def test_load_defaults_leave_path_and_residency_empty(self) -> None:
        call = self.in_thread(self.client.load, "minilm")
        request = self._answer_admin()
        call.get()
        self.assertEqual((request.load.path, request.load.residency), ("", ""))
        call = self.in_thread(self.client.load, "minilm", "/abs/minilm", "on_demand")
        request = self._answer_admin()
        call.get()
        self.assertEqual((request.load.path, request.load.residency), ("/abs/minilm", "on_demand"))

    def test_models_carry_residency_and_source(self) -> None:
        call = self.in_thread(self.client.models)
        request = self.peer_conn.recv_request()
        answer = response(request.id)
        answer.list_models.models.add(
            name="qwen3", task="generate", state="ready", residency="on_demand", source="admin"
        )
        self.peer_conn.send(answer)
        (model,) = call.get()  # type: ignore[misc]
        self.assertIsInstance(model, ModelInfo)
        self.assertEqual((model.residency, model.source), ("on_demand", "admin"))

    def test_status_carries_each_models_state(self) -> None:
        call = self.in_thread(self.client.status)
        request = self.peer_conn.recv_request()
        answer = response(request.id)
        answer.status.models.add(name="qwen3", state="failed")
        self.peer_conn.send(answer)
        self.assertEqual([(m.name, m.state) for m in call.get().models], [("qwen3", "failed")])

    def test_health_carries_the_reason(self) -> None:
        call = self.in_thread(self.client.health)
        request = self.peer_conn.recv_request()
        answer = response(request.id)
        answer.health.ready = False
        answer.health.status = "degraded"
        answer.health.reason = "pinned model 'minilm' failed to load: no such file"
        self.peer_conn.send(answer)
        self.assertEqual(
            call.get(),
            Health(
                ready=False, status="degraded",
                reason="pinned model 'minilm' failed to load: no such file",
            ),
        )


class TimeoutTest(ClientTestCase):
    client_timeout_s = 0.2

    def test_unanswered_request_times_out_and_is_cancelled(self) -> None:
        with self.assertRaises(SparkdError) as raised:
            self.client.embed("minilm", ["x"])
        self.assertEqual(raised.exception.code, "DEADLINE_EXCEEDED")
        request = self.peer_conn.recv_request()
        cancel = self.peer_conn.recv_request()
        self.assertEqual(cancel.cancel.target_id, request.id)
        self.assertEqual(raised.exception.request_id, request.id)


class ConnectTest(unittest.TestCase):
    def test_socket_path_comes_from_the_environment(self) -> None:
        peer = ScriptedPeer()
        self.addCleanup(peer.close)
        with mock.patch.dict(os.environ, {"SPARKD_SOCKET": peer.socket_path}):
            with Client() as client:
                self.assertEqual(client.socket_path, peer.socket_path)
                peer.accept()

    def test_connect_failure_names_the_path(self) -> None:
        missing = os.path.join(os.path.dirname(__file__), "no-such-dir", "sparkd.sock")
        with self.assertRaises(SparkdError) as raised:
            Client(missing)
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertIn(missing, raised.exception.message)

    def test_default_path(self) -> None:
        from sparkd._protocol import resolve_socket_path

        env: Dict[str, str] = {k: v for k, v in os.environ.items() if k != "SPARKD_SOCKET"}
        with mock.patch.dict(os.environ, env, clear=True):
            self.assertEqual(resolve_socket_path(None), "/run/sparkd/sparkd.sock")


if __name__ == "__main__":
    unittest.main()
