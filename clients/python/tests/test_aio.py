"""The asyncio AsyncClient against the same scripted peer (which runs on its own thread)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import unittest
from typing import List

from sparkd import AsyncClient, SparkdError
from sparkd import sparkd_pb2 as pb

from ._peer import PeerConnection, ScriptedPeer, error_response, response


async def in_thread(function, *args):  # type: ignore[no-untyped-def]
    """Play the daemon's blocking side without blocking the event loop the client runs on."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


def embed_answer(request: pb.Request, values: List[float]) -> pb.Response:
    answer = response(request.id)
    answer.embed.dimensions = len(values)
    answer.embed.embeddings.add().values.extend(values)
    return answer


class AsyncClientTestCase(unittest.IsolatedAsyncioTestCase):
    """Starts a peer and a client connected to it; ``self.peer_conn`` is the daemon's end."""

    client_timeout_s = 10.0

    async def asyncSetUp(self) -> None:
        self.peer = ScriptedPeer()
        self.client = await AsyncClient.connect(self.peer.socket_path, timeout=self.client_timeout_s)
        self.peer_conn: PeerConnection = self.peer.accept()

    async def asyncTearDown(self) -> None:
        await self.client.close()
        self.peer.close()


class AsyncClientTest(AsyncClientTestCase):

    async def test_embed_roundtrip(self) -> None:
        call = asyncio.ensure_future(self.client.embed("minilm", ["a", "b"], normalize=True))
        request = await in_thread(self.peer_conn.recv_request)
        self.assertEqual(list(request.embed.inputs), ["a", "b"])
        self.assertTrue(request.embed.normalize)
        answer = response(request.id)
        answer.embed.dimensions = 1
        answer.embed.embeddings.add().values.append(0.5)
        answer.embed.embeddings.add().values.append(-0.5)
        answer.usage.prompt_tokens = 2
        await in_thread(self.peer_conn.send, answer)
        result = await call
        self.assertEqual(result.embeddings, [[0.5], [-0.5]])
        self.assertEqual(result.usage.prompt_tokens, 2)

    async def test_concurrent_calls_get_their_own_out_of_order_answers(self) -> None:
        count = 6
        calls = [
            asyncio.ensure_future(self.client.embed("minilm", [str(index)]))
            for index in range(count)
        ]
        requests = await in_thread(self.peer_conn.recv_requests, count)
        self.assertEqual(len({r.id for r in requests}), count)
        frames = b"".join(
            PeerConnection.frame(embed_answer(r, [float(r.embed.inputs[0])]))
            for r in reversed(requests)
        )
        # All answers in one write, split into odd-sized pieces: frames straddle reads.
        await in_thread(self.peer_conn.send_in_pieces, frames, 5)
        results = await asyncio.gather(*calls)
        self.assertEqual([r.embeddings for r in results], [[[float(i)]] for i in range(count)])

    async def test_async_for_over_a_stream(self) -> None:
        async def play_daemon() -> pb.Request:
            request = await in_thread(self.peer_conn.recv_request)
            for index, text in enumerate(["a", "b", "c"]):
                chunk = response(request.id, final=index == 2)
                chunk.generate.text = text
                if index == 2:
                    chunk.generate.finish_reason = "length"
                    chunk.usage.completion_tokens = 3
                await in_thread(self.peer_conn.send, chunk)
            return request

        daemon = asyncio.ensure_future(play_daemon())
        stream = self.client.generate_stream("qwen3-demo", prompt="p", max_tokens=3)
        texts = [chunk.text async for chunk in stream]
        request = await daemon
        self.assertTrue(request.generate.stream)
        self.assertEqual(request.generate.max_tokens, 3)
        self.assertEqual(texts, ["a", "b", "c"])
        self.assertEqual(stream.finish_reason, "length")
        assert stream.usage is not None
        self.assertEqual(stream.usage.completion_tokens, 3)

    async def test_generate_joins_the_text(self) -> None:
        call = asyncio.ensure_future(
            self.client.generate("qwen3-demo", messages=[{"role": "user", "content": "q"}])
        )
        request = await in_thread(self.peer_conn.recv_request)
        self.assertFalse(request.generate.stream)
        answer = response(request.id)
        answer.generate.text = "answer"
        answer.generate.token_ids.extend([1, 2])
        answer.generate.finish_reason = "stop"
        await in_thread(self.peer_conn.send, answer)
        generation = await call
        self.assertEqual((generation.text, generation.token_ids), ("answer", [1, 2]))
        self.assertEqual(generation.finish_reason, "stop")

    async def test_error_response_raises(self) -> None:
        call = asyncio.ensure_future(self.client.rerank("rerank-demo", "q", ["d"]))
        request = await in_thread(self.peer_conn.recv_request)
        await in_thread(
            self.peer_conn.send, error_response(request.id, pb.PERMISSION_DENIED, "not admin")
        )
        with self.assertRaises(SparkdError) as raised:
            await call
        self.assertEqual(raised.exception.code, "PERMISSION_DENIED")
        self.assertEqual(raised.exception.request_id, request.id)

    async def test_aclose_before_the_end_sends_cancel(self) -> None:
        async with self.client.generate_stream("qwen3-demo", prompt="p") as stream:
            request = await in_thread(self.peer_conn.recv_request)
            chunk = response(request.id, final=False)
            chunk.generate.text = "first"
            await in_thread(self.peer_conn.send, chunk)
            async for received in stream:
                self.assertEqual(received.text, "first")
                break
        cancel = await in_thread(self.peer_conn.recv_request)
        self.assertEqual(cancel.WhichOneof("kind"), "cancel")
        self.assertEqual(cancel.cancel.target_id, request.id)
        # The connection still works afterwards, and a late chunk is ignored.
        late = response(request.id)
        await in_thread(self.peer_conn.send, late)
        call = asyncio.ensure_future(self.client.health())
        health_request = await in_thread(self.peer_conn.recv_request)
        answer = response(health_request.id)
        answer.health.ready = True
        await in_thread(self.peer_conn.send, answer)
        self.assertTrue((await call).ready)

    async def test_connection_lost_fails_every_waiting_call(self) -> None:
        calls = [asyncio.ensure_future(self.client.health()) for _ in range(3)]
        await in_thread(self.peer_conn.recv_requests, 3)
        await in_thread(self.peer_conn.close)
        for call in calls:
            with self.assertRaises(SparkdError) as raised:
                await call
            self.assertEqual(raised.exception.code, "UNAVAILABLE")
        # The next call connects afresh.
        later = asyncio.ensure_future(self.client.models())
        fresh = await in_thread(self.peer.accept)
        await in_thread(fresh.send, response((await in_thread(fresh.recv_request)).id))
        self.assertEqual(await later, [])

    async def test_stream_interrupted_by_connection_loss(self) -> None:
        stream = self.client.generate_stream("qwen3-demo", prompt="p")
        pending_chunk = asyncio.ensure_future(stream.__anext__())
        request = await in_thread(self.peer_conn.recv_request)
        chunk = response(request.id, final=False)
        chunk.generate.text = "so far"
        await in_thread(self.peer_conn.send, chunk)
        self.assertEqual((await pending_chunk).text, "so far")
        await in_thread(self.peer_conn.close)
        with self.assertRaises(SparkdError) as raised:
            await stream.__anext__()
        self.assertEqual(raised.exception.code, "UNAVAILABLE")

    async def test_close_fails_a_call_whose_frame_could_not_be_written(self) -> None:
        # The peer reads nothing, so a large frame fills the socket and its write blocks;
        # close() must still end the call, not leave it waiting for a write that never ends.
        call = asyncio.ensure_future(self.client.embed("minilm", ["x" * 8_000_000]))
        await asyncio.sleep(0.2)
        await self.client.close()
        with self.assertRaises(SparkdError) as raised:
            await asyncio.wait_for(call, 10)
        self.assertEqual(raised.exception.code, "UNAVAILABLE")

    async def test_close_fails_waiting_calls(self) -> None:
        call = asyncio.ensure_future(self.client.health())
        await in_thread(self.peer_conn.recv_request)
        await self.client.close()
        with self.assertRaises(SparkdError) as raised:
            await call
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertTrue(await in_thread(self.peer_conn.expect_eof))


TOO_MANY_CONNECTIONS = (
    "sparkd already serves 256 connections (server.max_connections); close idle connections "
    "or raise the limit"
)
IDLE = "closing the connection: idle for 300 s (server.idle_timeout_s); connect again to send more"


class AsyncConnectionEndTest(AsyncClientTestCase):
    """The daemon's reason for closing, transparent reconnect, and the duplicate-id refusal."""

    async def _wait_until_lost(self) -> None:
        deadline = time.monotonic() + 5
        while self.client._connection.end is None:
            self.assertLess(time.monotonic(), deadline, "the client did not see the loss")
            await asyncio.sleep(0.005)

    async def _health_on_a_fresh_connection(self) -> PeerConnection:
        call = asyncio.ensure_future(self.client.health())
        fresh: PeerConnection = await in_thread(self.peer.accept)
        request = await in_thread(fresh.recv_request)
        self.assertEqual(request.WhichOneof("kind"), "health")
        answer = response(request.id)
        answer.health.ready = True
        await in_thread(fresh.send, answer)
        self.assertTrue((await call).ready)
        return fresh

    async def test_waiting_calls_raise_the_daemons_code_and_message(self) -> None:
        calls = [asyncio.ensure_future(self.client.health()) for _ in range(3)]
        await in_thread(self.peer_conn.recv_requests, 3)
        await in_thread(
            self.peer_conn.close_with_error, pb.RESOURCE_EXHAUSTED, TOO_MANY_CONNECTIONS
        )
        for call in calls:
            with self.assertRaises(SparkdError) as raised:
                await call
            self.assertEqual(raised.exception.code, "RESOURCE_EXHAUSTED")
            self.assertEqual(raised.exception.message, TOO_MANY_CONNECTIONS)
            self.assertIsNotNone(raised.exception.request_id)
        # Those callers heard why; the next call opens a fresh connection.
        self.assertFalse(self.client.closed)
        await self._health_on_a_fresh_connection()

    async def test_send_failed_on_an_oversized_frame_raises_the_daemons_reason(self) -> None:
        call = asyncio.ensure_future(self.client.embed("minilm", ["x" * 20_000_000]))
        length = await in_thread(self.peer_conn.recv_frame_length)
        message = f"frame of {length} bytes exceeds max_frame_bytes 16777216"
        await in_thread(self.peer_conn.close_with_error, pb.RESOURCE_EXHAUSTED, message)
        with self.assertRaises(SparkdError) as raised:
            await call
        self.assertEqual(raised.exception.code, "RESOURCE_EXHAUSTED")
        self.assertEqual(raised.exception.message, message)
        self.assertEqual(raised.exception.request_id, 1)

    async def test_send_failed_without_a_reason_is_unavailable(self) -> None:
        call = asyncio.ensure_future(self.client.embed("minilm", ["x" * 20_000_000]))
        await in_thread(self.peer_conn.recv_frame_length)
        await in_thread(self.peer_conn.close)
        with self.assertRaises(SparkdError) as raised:
            await call
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertIn(
            f"connection to sparkd at {self.peer.socket_path} lost", raised.exception.message
        )

    async def test_a_refused_duplicate_id_does_not_end_the_call(self) -> None:
        call = asyncio.ensure_future(self.client.embed("minilm", ["x"]))
        request = await in_thread(self.peer_conn.recv_request)
        refusal = error_response(request.id, pb.ALREADY_EXISTS, "request id 1 is in flight")
        refusal.final = False
        await in_thread(self.peer_conn.send, refusal)
        await in_thread(self.peer_conn.send, embed_answer(request, [5.0]))
        self.assertEqual((await call).embeddings, [[5.0]])

    async def test_idle_connection_closed_by_the_daemon_is_reopened(self) -> None:
        await in_thread(self.peer_conn.close_with_error, pb.UNAVAILABLE, IDLE)
        await self._wait_until_lost()
        self.assertFalse(self.client.closed, "an idle loss is not the end of the client")
        fresh = await self._health_on_a_fresh_connection()
        call = asyncio.ensure_future(self.client.embed("minilm", ["x"]))
        request = await in_thread(fresh.recv_request)
        await in_thread(fresh.send, embed_answer(request, [1.0]))
        self.assertEqual((await call).embeddings, [[1.0]])
        self.assertTrue(await in_thread(self.peer.expect_no_connection, 0.1))

    async def test_daemon_restarted_between_calls(self) -> None:
        await in_thread(self.peer_conn.close)
        await self._wait_until_lost()
        await self._health_on_a_fresh_connection()

    async def test_a_failed_reconnect_raises_unavailable_with_the_previous_reason(self) -> None:
        self.peer.stop_listening()
        await in_thread(self.peer_conn.close_with_error, pb.UNAVAILABLE, IDLE)
        await self._wait_until_lost()
        with self.assertRaises(SparkdError) as raised:
            await self.client.health()
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertIn(
            f"cannot connect to sparkd at {self.peer.socket_path}", raised.exception.message
        )
        self.assertIn(IDLE, raised.exception.message)
        # The client is not given up on: the next call tries to reconnect again.
        with self.assertRaises(SparkdError) as raised:
            await self.client.health()
        self.assertIn("cannot connect", raised.exception.message)
        self.assertFalse(self.client.closed)

    async def test_nothing_reconnects_after_close(self) -> None:
        await self.client.close()
        with self.assertRaises(SparkdError) as raised:
            await self.client.health()
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertIn("client was closed", raised.exception.message)
        self.assertTrue(await in_thread(self.peer.expect_no_connection))


class AsyncArgumentsTest(AsyncClientTestCase):
    async def test_out_of_range_numbers_raise_sparkd_error_naming_the_field(self) -> None:
        u32 = "[0, 4294967295]"
        for call, message in (
            (lambda: self.client.generate("g", prompt="p", max_tokens=-5),
             f"generate.max_tokens must be in {u32}, got -5"),
            (lambda: self.client.embed("m", ["x"], deadline_ms=-1),
             f"embed.deadline_ms must be in {u32}, got -1"),
            (lambda: self.client.rerank("r", "q", ["d"], top_n=2**32),
             f"rerank.top_n must be in {u32}, got 4294967296"),
            (lambda: self.client.detokenize("g", [0, -(2**31) - 1]),
             "detokenize.ids[1] must be in [-2147483648, 2147483647], got -2147483649"),
        ):
            with self.subTest(message):
                with self.assertRaises(SparkdError) as raised:
                    await call()
                self.assertEqual(raised.exception.code, "INVALID_ARGUMENT")
                self.assertEqual(raised.exception.message, message)
        with self.assertRaises(SparkdError) as raised:
            self.client.generate_stream("g", prompt="p", seed=-1)
        self.assertEqual(
            raised.exception.message,
            "generate.sampling.seed must be in [0, 18446744073709551615], got -1",
        )

    async def test_load_makes_a_relative_path_absolute_and_sends_residency(self) -> None:
        here = os.getcwd()
        with tempfile.TemporaryDirectory() as directory:
            os.chdir(directory)
            try:
                callers_directory = os.getcwd()
                call = asyncio.ensure_future(
                    self.client.load("qwen3", "models/qwen3", residency="on_demand")
                )
                request = await in_thread(self.peer_conn.recv_request)
            finally:
                os.chdir(here)
        answer = response(request.id)
        answer.admin.message = "loaded"
        await in_thread(self.peer_conn.send, answer)
        self.assertEqual(await call, "loaded")
        self.assertEqual(request.load.path, os.path.join(callers_directory, "models", "qwen3"))
        self.assertEqual(request.load.residency, "on_demand")


class AsyncTimeoutTest(unittest.IsolatedAsyncioTestCase):
    async def test_unanswered_request_times_out_and_is_cancelled(self) -> None:
        peer = ScriptedPeer()
        self.addCleanup(peer.close)
        client = await AsyncClient.connect(peer.socket_path, timeout=0.2)
        peer_conn = peer.accept()
        with self.assertRaises(SparkdError) as raised:
            await client.embed("minilm", ["x"])
        self.assertEqual(raised.exception.code, "DEADLINE_EXCEEDED")
        request, cancel = await in_thread(peer_conn.recv_requests, 2)
        self.assertEqual(cancel.cancel.target_id, request.id)
        await client.close()

    async def test_connect_failure_is_unavailable(self) -> None:
        with self.assertRaises(SparkdError) as raised:
            await AsyncClient.connect("/nonexistent/sparkd.sock")
        self.assertEqual(raised.exception.code, "UNAVAILABLE")
        self.assertIn("/nonexistent/sparkd.sock", raised.exception.message)


if __name__ == "__main__":
    unittest.main()
