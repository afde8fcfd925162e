#!/usr/bin/env bash
# Builds the NIF and the Erlang sources, then runs:
#   1. the eunit suite (shapebuf_tests), including a restart check across
#      two VMs on the same directory;
#   2. the deploy storm of seed 004 against shapebuf and against ETS tables
#      per shape, and the scheduler-overshoot comparison (shapebuf_storm);
#      then memory per subscriber (100,000) in a VM of its own;
#   3. the Elixir smoke test, if `elixir` is installed.
# Exits non-zero on any failure. `--bench` also runs the ETS read bench.
# STORM_SECONDS (default 10) sets the storm's length.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/build.sh"
cd "$here"
erl_run() {
    erl -noshell +S 2:2 -pa ebin -pa test-ebin "$@"
}

# 1a. First VM: write, then halt without closing.
restart_dir="$(mktemp -d /tmp/shapebuf-restart-XXXXXX)"
trap 'rm -rf "$restart_dir"' EXIT
erl_run -eval "ok = shapebuf_tests:write_for_restart(\"$restart_dir\"), erlang:halt(0, [{flush, false}])."

# 1b. eunit (the second VM reads the first one's directory back).
SHAPEBUF_REOPEN_DIR="$restart_dir" erl_run -eval '
    case eunit:test(shapebuf_tests, [verbose]) of
        ok -> halt(0);
        _ -> halt(1)
    end.'

# 2. Storm and scheduler overshoot.
erl_run +sbwt none -eval '
    case shapebuf_storm:main() of
        ok -> halt(0);
        Other -> io:format("storm failed: ~p~n", [Other]), halt(1)
    end.'

# Memory per subscriber, in a fresh VM.
erl_run -eval '
    case shapebuf_storm:subscribers_main() of
        ok -> halt(0);
        Other -> io:format("subscribers failed: ~p~n", [Other]), halt(1)
    end.'

if [[ "${1:-}" == "--bench" ]]; then
    erl_run -eval 'shapebuf_storm:bench(), halt(0).'
fi

# 3. Elixir smoke test.
if command -v elixir >/dev/null; then
    elixir -pa ebin test/smoke.exs
else
    echo "elixir not installed: smoke test skipped"
fi
echo "run-tests.sh: all passed"
