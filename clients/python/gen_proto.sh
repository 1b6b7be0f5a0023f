#!/bin/sh
# Regenerates sparkd/sparkd_pb2.py from api/sparkd.proto. The output is committed so that
# `pip install ./clients/python` needs no protoc; tests/test_generated_code.py regenerates it
# into a temporary directory and fails if the committed copy differs, so it cannot go stale.
#
# Usage: clients/python/gen_proto.sh [OUTPUT_DIR]   (default: clients/python/sparkd)
# PROTOC overrides the compiler; the committed file was made by protoc 3.21.12 (Debian 12),
# and another version may produce different (still valid) bytes.
set -eu

script_dir=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
out_dir=${1:-$script_dir/sparkd}
protoc=${PROTOC:-protoc}

expected_version="libprotoc 3.21.12"
actual_version=$("$protoc" --version)
if [ "$actual_version" != "$expected_version" ]; then
  echo "gen_proto.sh: warning: $protoc is '$actual_version', the committed file was made by" \
    "'$expected_version'; the output may differ byte for byte" >&2
fi

mkdir -p "$out_dir"
"$protoc" --python_out="$out_dir" -I"$repo_root/api" "$repo_root/api/sparkd.proto"
