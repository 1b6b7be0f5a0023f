"""sparkd_pb2.py is committed; regenerating it must give the same bytes, or it has gone stale."""

from __future__ import annotations

import os
import subprocess
import tempfile
import unittest

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(os.path.dirname(PACKAGE_ROOT))


class GeneratedCodeTest(unittest.TestCase):
    def test_committed_pb2_matches_a_fresh_protoc_run(self) -> None:
        # protoc is always installed where the project builds (protobuf-compiler), so a missing
        # protoc is a failure here, never a skip.
        committed_path = os.path.join(PACKAGE_ROOT, "sparkd", "sparkd_pb2.py")
        with tempfile.TemporaryDirectory() as out_dir:
            run = subprocess.run(
                [os.path.join(PACKAGE_ROOT, "gen_proto.sh"), out_dir],
                capture_output=True,
                text=True,
            )
            self.assertEqual(run.returncode, 0, f"gen_proto.sh failed:\n{run.stderr}")
            with open(os.path.join(out_dir, "sparkd_pb2.py"), "rb") as fresh:
                fresh_bytes = fresh.read()
        with open(committed_path, "rb") as committed:
            committed_bytes = committed.read()
        self.assertTrue(
            fresh_bytes == committed_bytes,
            f"{committed_path} differs from what {os.path.join(REPO_ROOT, 'api', 'sparkd.proto')} "
            f"generates; run clients/python/gen_proto.sh and commit the result. {run.stderr}",
        )


if __name__ == "__main__":
    unittest.main()
