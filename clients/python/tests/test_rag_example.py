"""examples/rag.py runs its four stages over the socket and feeds each stage's output onward."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import threading
import unittest
from typing import Dict, List

from sparkd import sparkd_pb2 as pb

from ._peer import ScriptedPeer, response

EXAMPLE_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "rag.py"
)


def load_example():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("sparkd_rag_example", EXAMPLE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def topic_vector(text: str) -> List[float]:
    """A fake embedding: one axis per topic keyword, so retrieval has a known right answer."""
    keywords = ["sourdough", "planet", "tyre", "memory"]
    lowered = text.lower()
    hits = [1.0 if keyword in lowered else 0.0 for keyword in keywords]
    # Every text gets a little of a fifth axis so no vector is zero.
    return hits + [0.1]


class RagExampleTest(unittest.TestCase):
    def test_stages_are_wired_together(self) -> None:
        rag = load_example()
        peer = ScriptedPeer()
        self.addCleanup(peer.close)
        seen: Dict[str, pb.Request] = {}

        def play_daemon() -> None:
            conn = peer.accept()
            for _ in range(3):  # embed corpus, embed question, rerank
                request = conn.recv_request()
                kind = request.WhichOneof("kind")
                answer = response(request.id)
                if kind == "embed":
                    seen["embed_question" if len(request.embed.inputs) == 1 else "embed"] = request
                    answer.embed.dimensions = 5
                    for text in request.embed.inputs:
                        answer.embed.embeddings.add().values.extend(topic_vector(text))
                else:
                    seen["rerank"] = request
                    # Reverse the retrieval order, so the prompt must follow the reranker.
                    count = len(request.rerank.documents)
                    for index in reversed(range(count)):
                        answer.rerank.results.add(
                            index=index, score=index / count, document=request.rerank.documents[index]
                        )
                conn.send(answer)
            request = conn.recv_request()
            seen["generate"] = request
            for text, final in (("Feed it ", False), ("daily.", True)):
                chunk = response(request.id, final=final)
                chunk.generate.text = text
                if final:
                    chunk.generate.finish_reason = "stop"
                    chunk.usage.completion_tokens = 2
                conn.send(chunk)

        daemon = threading.Thread(target=play_daemon, daemon=True)
        daemon.start()
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            exit_code = rag.main(["--socket", peer.socket_path, "Is my sourdough alive?"])
        daemon.join(timeout=10)
        self.assertEqual(exit_code, 0)

        self.assertEqual(seen["embed"].embed.model, "minilm")
        self.assertTrue(seen["embed"].embed.normalize)
        self.assertEqual(list(seen["embed_question"].embed.inputs), ["Is my sourdough alive?"])
        rerank = seen["rerank"].rerank
        self.assertEqual(rerank.model, "rerank-demo")
        self.assertEqual(len(rerank.documents), 4)
        # Both sourdough passages are nearest to the question, so they are retrieved first.
        self.assertIn("sourdough", rerank.documents[0].lower())
        self.assertIn("sourdough", rerank.documents[1].lower())

        generate = seen["generate"].generate
        self.assertEqual(generate.model, "smollm2")
        self.assertTrue(generate.stream)
        user_turn = generate.chat.messages[-1].content
        # Passages appear in the reranker's order (reversed retrieval order).
        positions = [user_turn.index(document) for document in reversed(rerank.documents)]
        self.assertEqual(positions, sorted(positions))
        self.assertIn("Is my sourdough alive?", user_turn)

        output = stdout.getvalue()
        self.assertIn("Feed it daily.", output)
        self.assertIn("finish_reason=stop", output)

    def test_error_exits_nonzero(self) -> None:
        rag = load_example()
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            exit_code = rag.main(["--socket", "/nonexistent/sparkd.sock"])
        self.assertEqual(exit_code, 1)
        self.assertIn("UNAVAILABLE", stderr.getvalue())

    def test_missing_protobuf_runtime_says_what_to_install(self) -> None:
        # Stand in for a python3 without protobuf (a pyenv or venv interpreter): block the
        # `google` package, then run the example as a script.
        without_protobuf = (
            "import runpy, sys; sys.modules['google'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')"
        )
        run = subprocess.run(
            [sys.executable, "-c", without_protobuf, EXAMPLE_PATH, "--socket", "/nonexistent"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(run.returncode, 2, run.stderr)
        self.assertNotIn("Traceback", run.stderr)
        (line,) = run.stderr.splitlines()
        self.assertIn("protobuf", line)
        self.assertIn("-m pip install " + os.path.dirname(os.path.dirname(EXAMPLE_PATH)), line)
        self.assertEqual(run.stdout, "")


if __name__ == "__main__":
    unittest.main()
