%% eunit tests of the shapebuf binding: the library's own cases mirrored
%% from Erlang (round trip, live tail, reader meets terminate, removal race,
%% owner killed, subscriber killed, reopen), and the VM's rules (owner-only
%% writers, locked directories, argument errors).
%%
%% The storm, the scheduler overshoot and the ETS read bench are in
%% shapebuf_storm.erl (run by run-tests.sh after these).
-module(shapebuf_tests).
-include_lib("eunit/include/eunit.hrl").

-export([tmpdir/1, rm/1, write_for_restart/1]).

%% ---- helpers ----------------------------------------------------------------

tmpdir(Tag) ->
    Base = case os:getenv("SHAPEBUF_TEST_DIR") of
               false -> "/tmp";
               D -> D
           end,
    Dir = filename:join(Base, lists:flatten(io_lib:format("shapebuf-~s-~s-~p",
              [Tag, os:getpid(), erlang:unique_integer([positive])]))),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Dir.

rm(Dir) -> file:del_dir_r(Dir).

with_store(Tag, Fun) ->
    Dir = tmpdir(Tag),
    {ok, S} = shapebuf:open(Dir),
    try Fun(S, Dir)
    after
        _ = shapebuf:close(S),
        rm(Dir)
    end.

payload(Tx, Op) -> <<"p-", (integer_to_binary(Tx))/binary, "-", (integer_to_binary(Op))/binary>>.

%% Appends and commits transactions Txs of N entries each.
write_txs(W, Txs, N) ->
    lists:foreach(fun(Tx) ->
                          [ok = shapebuf:append(W, {Tx, Op}, payload(Tx, Op))
                           || Op <- lists:seq(0, N - 1)],
                          {ok, {Tx, _}} = shapebuf:commit(W)
                  end, Txs).

expected(Txs, N) -> [{{Tx, Op}, payload(Tx, Op)} || Tx <- Txs, Op <- lists:seq(0, N - 1)].

read_all(S, Id) -> read_all(S, Id, {0, 0}, []).
read_all(S, Id, After, Acc) ->
    case shapebuf:read(S, Id, After, infinity, #{max_entries => 7}) of
        {ok, [], #{more := false}} -> {ok, lists:append(lists:reverse(Acc))};
        {ok, Es, #{more := More}} ->
            {Last, _} = lists:last(Es),
            case More of
                true -> read_all(S, Id, Last, [Es | Acc]);
                false -> {ok, lists:append(lists:reverse([Es | Acc]))}
            end;
        Err -> Err
    end.

%% Runs Fun in a new process and returns its result (or {'EXIT', Reason}).
in_proc(Fun) ->
    Self = self(),
    {Pid, Mon} = spawn_monitor(fun() -> Self ! {self(), catch Fun()} end),
    receive
        {Pid, R} -> receive {'DOWN', Mon, _, _, _} -> R end;
        {'DOWN', Mon, _, _, Why} -> {'EXIT', Why}
    end.

%% ---- basics -----------------------------------------------------------------

round_trip_test() ->
    with_store("rt", fun(S, _) ->
        {ok, W} = shapebuf:writer(S, <<"orders">>),
        ok = shapebuf:append(W, {1, 0}, <<"created">>),
        ok = shapebuf:append(W, {1, 1}, <<"paid">>),
        %% Uncommitted: invisible.
        ?assertMatch({ok, [], #{dead := false, more := false}},
                     shapebuf:read(S, <<"orders">>, {0, 0}, infinity)),
        ?assertEqual({ok, {1, 1}}, shapebuf:commit(W)),
        ?assertEqual({ok, [{{1, 0}, <<"created">>}, {{1, 1}, <<"paid">>}],
                      #{dead => false, from_disk => 0, more => false}},
                     shapebuf:read(S, <<"orders">>, {0, 0}, infinity)),
        ?assertEqual({ok, [{{1, 1}, <<"paid">>}], #{dead => false, from_disk => 0, more => false}},
                     shapebuf:read(S, <<"orders">>, {1, 0}, {1, 1})),
        ?assertMatch({ok, [{{1, 0}, _}], #{more := true}},
                     shapebuf:read(S, <<"orders">>, {0, 0}, infinity, #{max_entries => 1})),
        ok = shapebuf:append_many(W, [{{2, 0}, <<"a">>}, {{2, 1}, <<"b">>}]),
        {ok, {2, 1}} = shapebuf:commit(W),
        ?assertEqual({ok, {2, 1}}, shapebuf:committed(S, <<"orders">>)),
        ?assertMatch({ok, #{persisted := {2, 1}, committed := {2, 1}}}, shapebuf:flush(W)),
        ?assertEqual({ok, false}, shapebuf:tick(W)),
        ?assertMatch({ok, #{shape_count := 1, live_writers := 1, entries_not_durable := 0,
                            flush_errors := 0}}, shapebuf:stats(S)),
        {ok, #{flushes := Flushes}} = shapebuf:stats(S),
        ?assert(Flushes >= 1),
        ?assertMatch({ok, {_, _}}, shapebuf:durable_offset(S)),
        ?assertMatch({ok, #{committed := {2, 1}}}, shapebuf:terminate(W)),
        ?assertEqual({error, closed}, shapebuf:append(W, {3, 0}, <<"x">>)),
        ?assertEqual({error, closed}, shapebuf:terminate(W)),
        ?assertMatch({ok, [_, _, _, _], #{dead := true, from_disk := 4}},
                     shapebuf:read(S, <<"orders">>, {0, 0}, infinity))
    end).

subbinaries_share_one_binary_test() ->
    with_store("sub", fun(S, _) ->
        {ok, W} = shapebuf:writer(S, <<"s">>),
        %% Above 64 bytes (smaller sub-binaries are copied by the VM into
        %% heap binaries, which is cheaper for them).
        Big = fun(Op) -> binary:copy(<<(Op rem 256)>>, 100) end,
        ok = shapebuf:append_many(W, [{{1, Op}, Big(Op)} || Op <- lists:seq(0, 99)]),
        {ok, _} = shapebuf:commit(W),
        {ok, Es, _} = shapebuf:read(S, <<"s">>, {0, 0}, infinity),
        ?assertEqual([{{1, Op}, Big(Op)} || Op <- lists:seq(0, 99)], Es),
        %% Each payload is a sub-binary of one resource binary (whose
        %% referenced size is the resource's, the same for all), not a
        %% binary of its own (referenced size 100).
        Sizes = lists:usort([binary:referenced_byte_size(P) || {_, P} <- Es]),
        ?assertMatch([_], Sizes),
        ?assertNotEqual([100], Sizes),
        %% A copy per entry would be 100 binaries of 100 bytes.
        {ok, [{_, One}], _} = shapebuf:read(S, <<"s">>, {0, 0}, infinity, #{max_entries => 1}),
        ?assertEqual(Sizes, [binary:referenced_byte_size(One)])
    end).

errors_test() ->
    with_store("err", fun(S, Dir) ->
        ?assertEqual({error, locked}, shapebuf:open(Dir)),
        ?assertEqual({error, not_found}, shapebuf:read(S, <<"nope">>, {0, 0}, infinity)),
        ?assertEqual({error, not_found}, shapebuf:subscribe(S, <<"nope">>, {0, 0}, 10)),
        {ok, W} = shapebuf:writer(S, <<"s">>),
        ?assertEqual({error, writer_active}, shapebuf:writer(S, <<"s">>)),
        ?assertEqual({error, zero_offset}, shapebuf:append(W, {0, 0}, <<"x">>)),
        ok = shapebuf:append(W, {5, 0}, <<"x">>),
        ?assertEqual({error, {out_of_order, {5, 0}}}, shapebuf:append(W, {4, 0}, <<"y">>)),
        ?assertEqual({error, bad_shape_id}, shapebuf:writer(S, <<>>)),
        ?assertError(badarg, shapebuf:append(W, {1, -1}, <<"x">>)),
        ?assertError(badarg, shapebuf:append(W, {1, 1}, "not a binary")),
        ?assertError(badarg, shapebuf:read(S, <<"s">>, {0, 0}, soon)),
        ?assertError(badarg, shapebuf:read(S, <<"s">>, {0, 0}, infinity, #{max_entries => -1})),
        ?assertError(badarg, shapebuf:writer(S, "s")),
        ?assertEqual({error, not_owner}, in_proc(fun() -> shapebuf:append(W, {6, 0}, <<"z">>) end)),
        ?assertEqual({error, not_owner}, in_proc(fun() -> shapebuf:terminate(W) end)),
        ?assertEqual({error, not_owner}, in_proc(fun() -> shapebuf:commit(W) end))
    end).

config_test() ->
    Dir = tmpdir("cfg"),
    ?assertEqual({error, {invalid_config, colour}}, shapebuf:open(Dir, #{colour => blue})),
    ?assertEqual({error, {invalid_config, flush_bytes}}, shapebuf:open(Dir, #{flush_bytes => 0})),
    ?assertEqual({error, {invalid_config, max_open_files}},
                 shapebuf:open(Dir, #{max_open_files => many})),
    ?assertError(badarg, shapebuf:open(Dir, [])),
    {ok, S} = shapebuf:open(Dir, #{flush_bytes => 1024, retain_bytes => 0,
                                   flush_interval_ms => 50, max_open_files => 8}),
    {ok, W} = shapebuf:writer(S, <<"t">>),
    ok = shapebuf:append(W, {1, 0}, <<"x">>),
    {ok, _} = shapebuf:commit(W),
    %% No flush, no tick: the store's timer makes the commit durable within
    %% flush_interval, so a tick afterwards finds nothing to do.
    timer:sleep(300),
    ?assertEqual({ok, false}, shapebuf:tick(W)),
    ok = shapebuf:close(S),
    ?assertEqual({error, closed}, shapebuf:close(S)),
    ?assertEqual({error, closed}, shapebuf:stats(S)),
    ?assertEqual({error, closed}, shapebuf:read(S, <<"x">>, {0, 0}, infinity)),
    rm(Dir).

%% ---- live tail --------------------------------------------------------------

live_tail_test() ->
    with_store("tail", fun(S, _) ->
        {ok, W} = shapebuf:writer(S, <<"s">>),
        {ok, Ref} = shapebuf:subscribe(S, <<"s">>, {0, 0}, 5000),
        receive {shapebuf, Ref, Early} -> ?assertEqual(no_message, Early) after 50 -> ok end,
        write_txs(W, [3], 2),
        ?assertEqual({committed, {3, 1}}, recv(Ref, 2000)),
        %% Already committed past After: answered at once.
        {ok, Ref2} = shapebuf:subscribe(S, <<"s">>, {0, 0}, 5000),
        ?assertEqual({committed, {3, 1}}, recv(Ref2, 2000)),
        %% Timeout.
        {ok, Ref3} = shapebuf:subscribe(S, <<"s">>, {3, 1}, 30),
        ?assertEqual(timeout, recv(Ref3, 2000)),
        %% Unsubscribe: no message after.
        {ok, Ref4} = shapebuf:subscribe(S, <<"s">>, {3, 1}, infinity),
        ok = shapebuf:unsubscribe(Ref4),
        write_txs(W, [4], 1),
        receive {shapebuf, Ref4, M} -> ?assertEqual(no_message, M) after 100 -> ok end,
        %% Terminate ends a wait.
        {ok, Ref5} = shapebuf:subscribe(S, <<"s">>, {4, 0}, infinity),
        {ok, _} = shapebuf:terminate(W),
        ?assertEqual(terminated, recv(Ref5, 2000)),
        %% Many subscribers from many processes, one commit.
        {ok, W2} = shapebuf:writer(S, <<"s">>),
        Self = self(),
        Pids = [spawn_link(fun() ->
                                   {ok, R} = shapebuf:subscribe(S, <<"s">>, {4, 0}, 5000),
                                   Self ! {subscribed, self()},
                                   Self ! {got, self(), recv(R, 5000)}
                           end) || _ <- lists:seq(1, 200)],
        [receive {subscribed, P} -> ok end || P <- Pids],
        write_txs(W2, [5], 1),
        Got = [receive {got, P, O} -> O end || P <- Pids],
        ?assertEqual([{committed, {5, 0}}], lists:usort(Got))
    end).

recv(Ref, Timeout) ->
    receive {shapebuf, Ref, Outcome} -> Outcome
    after Timeout -> no_message
    end.

subscriber_killed_mid_wait_test() ->
    with_store("subkill", fun(S, _) ->
        {ok, W} = shapebuf:writer(S, <<"s">>),
        Self = self(),
        Pid = spawn(fun() ->
                            {ok, _} = shapebuf:subscribe(S, <<"s">>, {0, 0}, infinity),
                            Self ! subscribed,
                            receive never -> ok end
                    end),
        receive subscribed -> ok end,
        exit(Pid, kill),
        timer:sleep(50),
        %% The wait was dropped: commits go on, and a new subscriber works.
        write_txs(W, [1], 1),
        {ok, R} = shapebuf:subscribe(S, <<"s">>, {0, 0}, 1000),
        ?assertEqual({committed, {1, 0}}, recv(R, 1000)),
        %% Many killed subscribers leave nothing behind that blocks.
        Pids = [spawn(fun() ->
                              {ok, _} = shapebuf:subscribe(S, <<"s">>, {1, 0}, infinity),
                              receive never -> ok end
                      end) || _ <- lists:seq(1, 500)],
        timer:sleep(100),
        [exit(P, kill) || P <- Pids],
        timer:sleep(100),
        write_txs(W, [2], 1),
        {ok, _} = shapebuf:terminate(W)
    end).

durable_offset_test() ->
    with_store("durable", fun(S, _) ->
        {ok, D} = shapebuf:subscribe_durable(S),
        {ok, Wa} = shapebuf:writer(S, <<"a">>),
        {ok, Wb} = shapebuf:writer(S, <<"b">>),
        ok = shapebuf:append(Wa, {1, 0}, <<"x">>),
        ok = shapebuf:append(Wb, {1, 1}, <<"y">>),
        {ok, _} = shapebuf:commit(Wa),
        {ok, _} = shapebuf:commit(Wb),
        ?assertEqual({ok, {0, 0}}, shapebuf:track_commit(S, {1, 5}, [{<<"a">>, {1, 0}},
                                                                    {<<"b">>, {1, 1}}])),
        ?assertEqual({ok, {0, 0}}, shapebuf:durable_offset(S)),
        {ok, _} = shapebuf:flush(Wa),
        %% "b" has not flushed: the offset waits for it.
        ?assertEqual({ok, {0, 0}}, shapebuf:durable_offset(S)),
        receive {shapebuf, D, Early} -> ?assertEqual(nothing, Early) after 50 -> ok end,
        {ok, _} = shapebuf:flush(Wb),
        ?assertEqual({ok, {1, 5}}, shapebuf:durable_offset(S)),
        ?assertEqual({durable, {1, 5}}, recv(D, 2000)),
        %% A transaction no tracked shape received moves it at once.
        ?assertEqual({ok, {2, 0}}, shapebuf:track_commit(S, {2, 0}, [])),
        ?assertEqual({durable, {2, 0}}, recv(D, 2000)),
        ?assertMatch({error, {commit_out_of_order, _}}, shapebuf:track_commit(S, {1, 9}, [])),
        ok = shapebuf:unsubscribe_durable(S, D),
        {ok, _} = shapebuf:track_commit(S, {3, 0}, []),
        receive {shapebuf, D, Late} -> ?assertEqual(nothing, Late) after 50 -> ok end
    end).

%% ---- teardown ---------------------------------------------------------------

reader_meets_terminate_test() ->
    with_store("term", fun(S, _) ->
        {ok, W} = shapebuf:writer(S, <<"s">>),
        write_txs(W, lists:seq(1, 10), 5),
        Self = self(),
        Readers = [spawn_link(fun() -> Self ! {done, self(), reader_loop(S, 0, 0)} end)
                   || _ <- lists:seq(1, 20)],
        timer:sleep(20),
        {ok, _} = shapebuf:terminate(W),
        Results = [receive {done, P, R} -> R end || P <- Readers],
        ?assertEqual([], [R || R <- Results, element(1, R) =/= ok]),
        ?assert(lists:sum([D || {ok, _, D} <- Results]) > 0),
        ?assertMatch({ok, _, #{dead := true, from_disk := 50}},
                     shapebuf:read(S, <<"s">>, {0, 0}, infinity)),
        ?assertEqual({ok, expected(lists:seq(1, 10), 5)}, read_all(S, <<"s">>))
    end).

%% Reads until it has seen the shape dead 5 times; every read exact.
reader_loop(_S, Reads, Dead) when Dead >= 5 -> {ok, Reads, Dead};
reader_loop(S, Reads, Dead) ->
    case shapebuf:read(S, <<"s">>, {0, 0}, infinity) of
        {ok, Es, #{dead := D}} ->
            case Es =:= expected(lists:seq(1, 10), 5) of
                true -> reader_loop(S, Reads + 1, Dead + case D of true -> 1; false -> 0 end);
                false -> {wrong, Es}
            end;
        Other -> {error, Other}
    end.

removal_race_test() ->
    with_store("rm", fun(S, _) ->
        {ok, W} = shapebuf:writer(S, <<"s">>),
        write_txs(W, lists:seq(1, 20), 10),
        {ok, _} = shapebuf:flush(W),
        write_txs(W, [21], 10),
        Exp = expected(lists:seq(1, 21), 10),
        %% A shape with a live writer is not removed under it.
        ?assertEqual({error, writer_active}, shapebuf:remove(S, <<"s">>)),
        {ok, _} = shapebuf:terminate(W),
        Self = self(),
        Readers = [spawn_link(fun() -> Self ! {done, self(), rm_reader(S, Exp, 0, 0)} end)
                   || _ <- lists:seq(1, 20)],
        timer:sleep(20),
        ok = shapebuf:remove(S, <<"s">>),
        Results = [receive {done, P, R} -> R end || P <- Readers],
        ?assertEqual([], [R || R <- Results, element(1, R) =/= ok]),
        ?assertEqual({error, not_found}, shapebuf:read(S, <<"s">>, {0, 0}, infinity)),
        ?assertEqual({error, closed}, shapebuf:commit(W)),
        ?assertEqual({error, not_found}, shapebuf:remove(S, <<"s">>)),
        %% A new shape with the same id is empty.
        {ok, W2} = shapebuf:writer(S, <<"s">>),
        write_txs(W2, [1], 1),
        ?assertEqual({ok, expected([1], 1)}, read_all(S, <<"s">>))
    end).

%% Reads until the shape is gone: every answer exact or a documented error.
rm_reader(_S, _Exp, Exact, Gone) when Gone >= 3 -> {ok, Exact, Gone};
rm_reader(S, Exp, Exact, Gone) ->
    case shapebuf:read(S, <<"s">>, {0, 0}, infinity) of
        {ok, Exp, _} -> rm_reader(S, Exp, Exact + 1, Gone);
        {error, R} when R =:= not_found; R =:= removed -> rm_reader(S, Exp, Exact, Gone + 1);
        Other -> {wrong, Other}
    end.

owner_killed_with_uncommitted_data_test() ->
    with_store("owner", fun(S, _) ->
        Self = self(),
        Owner = spawn(fun() ->
                              {ok, W} = shapebuf:writer(S, <<"s">>),
                              write_txs(W, [1, 2], 3),
                              ok = shapebuf:append(W, {3, 0}, <<"uncommitted">>),
                              ok = shapebuf:append(W, {3, 1}, <<"uncommitted">>),
                              Self ! {ready, W},
                              receive never -> ok end
                      end),
        W = receive {ready, W0} -> W0 end,
        ?assertEqual({error, writer_active}, shapebuf:writer(S, <<"s">>)),
        Mon = monitor(process, Owner),
        exit(Owner, kill),
        receive {'DOWN', Mon, _, _, _} -> ok end,
        {ok, W2} = retry_writer(S, <<"s">>, 100),
        ?assertEqual({error, not_owner}, shapebuf:commit(W)),
        %% Committed entries present, uncommitted ones gone.
        ?assertEqual({ok, expected([1, 2], 3)}, read_all(S, <<"s">>)),
        write_txs(W2, [4], 1),
        ?assertEqual({ok, expected([1, 2], 3) ++ expected([4], 1)}, read_all(S, <<"s">>)),
        {ok, _} = shapebuf:terminate(W2)
    end).

retry_writer(S, Id, 0) -> shapebuf:writer(S, Id);
retry_writer(S, Id, N) ->
    case shapebuf:writer(S, Id) of
        {error, writer_active} -> timer:sleep(10), retry_writer(S, Id, N - 1);
        R -> R
    end.

%% ---- restart ----------------------------------------------------------------

close_and_reopen_test() ->
    Dir = tmpdir("reopen"),
    {ok, S} = shapebuf:open(Dir),
    {ok, W} = shapebuf:writer(S, <<"a">>),
    write_txs(W, lists:seq(1, 30), 4),
    ok = shapebuf:append(W, {31, 0}, <<"open transaction">>),
    {ok, Wb} = shapebuf:writer(S, <<"b">>),
    write_txs(Wb, [7], 2),
    {ok, _} = shapebuf:terminate(Wb),
    {ok, Sub} = shapebuf:subscribe(S, <<"a">>, {30, 3}, infinity),
    ok = shapebuf:close(S),
    ?assertEqual(closed, recv(Sub, 1000)),
    ?assertEqual({error, closed}, shapebuf:commit(W)),
    %% close/1 released the directory.
    {ok, S2} = shapebuf:open(Dir),
    ?assertEqual({ok, expected(lists:seq(1, 30), 4)}, read_all(S2, <<"a">>)),
    ?assertEqual({ok, expected([7], 2)}, read_all(S2, <<"b">>)),
    ?assertMatch({ok, #{shape_count := 2}}, shapebuf:stats(S2)),
    ok = shapebuf:close(S2),
    rm(Dir).

%% A directory written and closed by another OS process (run-tests.sh's
%% second VM: SHAPEBUF_REOPEN_DIR) reads back whole here.
other_vm_test_() ->
    case os:getenv("SHAPEBUF_REOPEN_DIR") of
        false -> [];
        Dir -> {"read back what another VM wrote", fun() -> check_written(Dir) end}
    end.

check_written(Dir) ->
    {ok, S} = shapebuf:open(Dir),
    ?assertEqual({ok, expected(lists:seq(1, 50), 3)}, read_all(S, <<"vm-a">>)),
    ?assertEqual({ok, expected(lists:seq(1, 5), 200)}, read_all(S, <<"vm-b">>)),
    ok = shapebuf:close(S).

%% The first VM of the restart check: writes two shapes, flushes one and
%% terminates the other, leaves an open transaction, and returns without
%% closing (run-tests.sh then halts the VM abruptly).
write_for_restart(Dir) ->
    {ok, S} = shapebuf:open(Dir),
    {ok, Wa} = shapebuf:writer(S, <<"vm-a">>),
    write_txs(Wa, lists:seq(1, 50), 3),
    ok = shapebuf:append(Wa, {51, 0}, <<"never committed">>),
    {ok, _} = shapebuf:flush(Wa),
    {ok, Wb} = shapebuf:writer(S, <<"vm-b">>),
    write_txs(Wb, lists:seq(1, 5), 200),
    {ok, _} = shapebuf:terminate(Wb),
    ok.
