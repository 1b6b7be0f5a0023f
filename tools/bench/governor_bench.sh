#!/usr/bin/env bash
# The governor's benchmark in one command: builds the simulator, measures this machine's
# profile (once; --measure again), runs every trace under every policy for the dgx-spark and
# this-machine profiles, draws a PNG per trace, and writes the tables into bench/README.md.
#
#   tools/bench/governor_bench.sh [--measure] [--seed N]
#
# Outputs: bench/results/governor/<profile>/<trace>.{md,png} (committed) and the trace files
# and CSVs they come from (.jsonl, .csv: replayable, not committed).
set -euo pipefail
cd "$(dirname "$0")/../.."

measure=0
seed=1
while (($#)); do
  case "$1" in
    --measure) measure=1 ;;
    --seed) seed="$2"; shift ;;
    *) echo "usage: $0 [--measure] [--seed N]" >&2; exit 2 ;;
  esac
  shift
done

[[ -f build/CMakeCache.txt ]] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target bench_governor bench_machine_profile

if ((measure)) || [[ ! -f bench/profiles/this-machine.toml ]]; then
  echo "governor_bench: measuring this machine (bench/profiles/this-machine.toml)"
  build/bench_machine_profile > bench/profiles/this-machine.toml.new
  mv bench/profiles/this-machine.toml.new bench/profiles/this-machine.toml
fi

# Debian's Python, where python3-matplotlib installs (not a pyenv or venv one ahead on PATH).
PYTHON=/usr/bin/python3
if ! $PYTHON -c "import matplotlib" 2>/dev/null; then
  echo "governor_bench: installing python3-matplotlib for the plots"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    python3-matplotlib
fi

section=$(mktemp)
trap 'rm -f "$section"' EXIT
for profile in dgx-spark this-machine; do
  out=bench/results/governor/$profile
  mkdir -p "$out"
  build/bench_governor --profile "bench/profiles/$profile.toml" --seed "$seed" --out "$out" \
    > "$out/results.md"
  memory_gib=$(sed -n 's/^memory_gib *= *\([0-9.]*\).*/\1/p' "bench/profiles/$profile.toml")
  $PYTHON tools/bench/plot_governor.py "$out" --machine-gib "$memory_gib" >/dev/null
  {
    echo "### Profile \`$profile\`"
    echo
    # The trace headings one level down, and each trace's plot under its table.
    sed 's/^## /#### /' "$out/results.md" | while IFS= read -r line; do
      if [[ $line == "#### "* ]]; then
        trace=${line#\#\#\#\# }
        trace=${trace%% *}
      fi
      echo "$line"
      if [[ -z $line && -n ${trace:-} && -n ${table_seen:-} ]]; then
        echo "![$trace under $profile](results/governor/$profile/$trace.png)"
        echo
        table_seen=
      fi
      if [[ $line == "|"* ]]; then table_seen=1; fi
    done
  } >> "$section"
done

{
  echo "### Profile \`dgx-spark\`, seeds 1-5"
  echo
  build/bench_governor --profile bench/profiles/dgx-spark.toml --seeds 1-5 | sed 's/^## /#### /'
} >> "$section"

python3 - "$section" <<'PY'
import pathlib, sys
readme = pathlib.Path("bench/README.md")
text = readme.read_text()
begin, end = "<!-- governor-results:begin -->", "<!-- governor-results:end -->"
if begin not in text or end not in text:
    sys.exit("governor_bench: bench/README.md has no governor-results markers")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
body = pathlib.Path(sys.argv[1]).read_text().rstrip() + "\n"
readme.write_text(head + begin + "\n" + body + end + tail)
PY
echo "governor_bench: bench/README.md and bench/results/governor/ updated"
