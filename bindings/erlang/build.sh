#!/usr/bin/env bash
# Builds the NIF (cargo, release) into priv/shapebuf_nif.so and compiles the
# Erlang sources into ebin/ (and the tests into test-ebin/). No rebar3, no Hex.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cargo build --release -p shapebuf-erlang
target="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$here/priv" "$here/ebin" "$here/test-ebin"
# Copy to a temporary name, then rename: a running VM that has the old .so
# mapped keeps its inode.
cp "$target/release/libshapebuf_erlang.so" "$here/priv/shapebuf_nif.so.tmp"
mv -f "$here/priv/shapebuf_nif.so.tmp" "$here/priv/shapebuf_nif.so"
erlc -Wall +warnings_as_errors -o "$here/ebin" "$here/src/shapebuf.erl"
sed -e 's/{modules, \[shapebuf\]}/{modules, [shapebuf]}/' "$here/src/shapebuf.app.src" > "$here/ebin/shapebuf.app"
erlc -Wall +warnings_as_errors -pa "$here/ebin" -o "$here/test-ebin" "$here"/test/*.erl
echo "built: $here/priv/shapebuf_nif.so, $here/ebin, $here/test-ebin"
