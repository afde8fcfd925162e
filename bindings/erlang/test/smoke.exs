# Elixir smoke test of the shapebuf binding: the usage the README shows.
# Run: elixir -pa ebin test/smoke.exs (after ./build.sh).
ExUnit.start()

defmodule ShapebufSmokeTest do
  use ExUnit.Case

  test "open, write, read, tail, terminate, reopen" do
    dir = Path.join(System.tmp_dir!(), "shapebuf-smoke-#{System.unique_integer([:positive])}")
    on_exit(fn -> File.rm_rf!(dir) end)

    {:ok, store} = :shapebuf.open(dir, %{flush_interval_ms: 100})
    assert {:error, :locked} = :shapebuf.open(dir)
    {:ok, w} = :shapebuf.writer(store, "orders")

    # Live tail: one message per subscription.
    {:ok, ref} = :shapebuf.subscribe(store, "orders", {0, 0}, 5_000)
    :ok = :shapebuf.append(w, {1, 0}, "created")
    :ok = :shapebuf.append(w, {1, 1}, "paid")
    {:ok, {1, 1}} = :shapebuf.commit(w)
    assert_receive {:shapebuf, ^ref, {:committed, {1, 1}}}, 2_000

    {:ok, entries, info} = :shapebuf.read(store, "orders", {0, 0}, :infinity)
    assert entries == [{{1, 0}, "created"}, {{1, 1}, "paid"}]
    assert info == %{dead: false, from_disk: 0, more: false}

    {:ok, [{{1, 0}, "created"}], %{more: true}} =
      :shapebuf.read(store, "orders", {0, 0}, :infinity, %{max_entries: 1})

    {:ok, %{committed: {1, 1}}} = :shapebuf.terminate(w)
    {:ok, _, %{dead: true, from_disk: 2}} = :shapebuf.read(store, "orders", {0, 0}, :infinity)
    {:ok, %{shape_count: 1}} = :shapebuf.stats(store)
    :ok = :shapebuf.close(store)

    {:ok, store} = :shapebuf.open(dir)
    {:ok, ^entries, _} = :shapebuf.read(store, "orders", {0, 0}, :infinity)
    assert {:error, {:invalid_config, :colour}} = :shapebuf.open(dir <> "-x", %{colour: :blue})
    :ok = :shapebuf.close(store)
  end
end
