%% Seed 004's deploy storm, replayed from 1,000 BEAM processes, against
%% shapebuf and against the ETS-table-per-shape pattern it replaces; the
%% scheduler-overshoot comparison; and the ETS read bench.
%%
%% The storm: `?SHAPES' shapes, one writer process each, appending whole
%% transactions of a deterministic model (the payload of `{Tx, Op}' of
%% shape `S' is a function of the three) and publishing each commit's
%% transaction number in an `atomics' array. Every second a "deploy" stops
%% every writer at once (terminate) and new writer processes take the
%% shapes over, continuing the model. 1,000 reader processes read random
%% shapes from random transaction boundaries all the while, and check every
%% answer against the model:
%%   - the entries are the model's entries right after `After', consecutive,
%%     with the model's payloads (no gap, no duplicate, no reordering);
%%   - the answer ends at a transaction boundary (unless `more');
%%   - it reaches at least the transaction committed before the read began
%%     (nothing committed is missing).
%% A read failing any of these is `wrong'. A read that raises `badarg' (a
%% deleted ETS table) is `badarg'.
%%
%% With ETS each shape is an `ordered_set' table owned by its writer,
%% published in a registry table; readers keep the table id they looked up
%% (as Electric's readers did before its fix) and look it up again after a
%% `badarg'. A terminating writer deletes its table; the new writer creates
%% a new one, publishes it, and reloads the shape into it (from "disk": the
%% model) in chunks, as a process restarting a shape does.
-module(shapebuf_storm).

-export([main/0, storm/2, overshoot/0, bench/0, subscribers/1, subscribers_main/0]).
-export([noop_read/5]).

-define(SHAPES, 20).
-define(READERS, 1000).
-define(DEPLOY_MS, 1000).
-define(SEED, {004, 4, 4}).
%% Transactions per read, at most.
-define(SPAN, 40).

%% ---- the model --------------------------------------------------------------

nops(S, Tx) -> 1 + (Tx * 7 + S) rem 3.

payload(S, Tx, Op) ->
    <<"shape ", S:16, " tx ", Tx:32, " op ", Op:16, " ", (binary:copy(<<(Tx rem 251)>>, 8))/binary>>.

tx_entries(S, Tx) -> [{{Tx, Op}, payload(S, Tx, Op)} || Op <- lists:seq(0, nops(S, Tx) - 1)].

succ(_S, {0, 0}) -> {1, 0};
succ(S, {Tx, Op}) ->
    case Op + 1 < nops(S, Tx) of
        true -> {Tx, Op + 1};
        false -> {Tx + 1, 0}
    end.

last_op(S, Tx) -> {Tx, nops(S, Tx) - 1}.

%% ok | {wrong, Why}: checks a read of shape S after `After' that returned
%% `Es' (with `More'), given that transaction `MinTx' was committed before
%% the read began.
check(S, After, Es, More, MinTx) ->
    case check_seq(S, succ(S, After), Es) of
        ok when Es =:= [] ->
            {AfterTx, _} = After,
            case MinTx =< AfterTx of
                true -> ok;
                false -> {wrong, {missing, After, MinTx}}
            end;
        ok ->
            {{LastTx, _} = Last, _} = lists:last(Es),
            LastOp = last_op(S, LastTx),
            if
                More -> ok;
                Last =/= LastOp -> {wrong, {torn, Last}};
                LastTx < MinTx -> {wrong, {missing, Last, MinTx}};
                true -> ok
            end;
        Wrong -> Wrong
    end.

check_seq(_S, _Next, []) -> ok;
check_seq(S, {Tx, Op} = Next, [{Next, P} | Rest]) ->
    case P =:= payload(S, Tx, Op) of
        true -> check_seq(S, succ(S, Next), Rest);
        false -> {wrong, {payload, Next}}
    end;
check_seq(_S, Next, [{Got, _} | _]) -> {wrong, {expected, Next, got, Got}}.

%% ---- the storm --------------------------------------------------------------

main() ->
    Secs = case os:getenv("STORM_SECONDS") of
               false -> 10;
               V -> list_to_integer(V)
           end,
    Sb = storm(shapebuf, Secs),
    Ets = storm(ets, Secs),
    io:format("storm shapebuf: reads=~b dead=~b wrong=~b badarg=~b errors=~b terminations=~b~n",
              [maps:get(K, Sb) || K <- [reads, dead, wrong, badarg, errors, terminations]]),
    io:format("storm ets: reads=~b badarg=~b wrong=~b terminations=~b~n",
              [maps:get(K, Ets) || K <- [reads, badarg, wrong, terminations]]),
    [io:format("  first wrong read (ets): ~p~n", [W]) || W <- maps:get(examples, Ets)],
    [io:format("  wrong read (shapebuf): ~p~n", [W]) || W <- maps:get(examples, Sb)],
    Ratio = overshoot(),
    Checks = [{shapebuf_wrong, maps:get(wrong, Sb) =:= 0},
              {shapebuf_badarg, maps:get(badarg, Sb) =:= 0},
              {shapebuf_errors, maps:get(errors, Sb) =:= 0},
              {shapebuf_read, maps:get(reads, Sb) > 0},
              {shapebuf_dead_reads_seen, maps:get(dead, Sb) > 0},
              {terminations, maps:get(terminations, Sb) >= ?SHAPES},
              %% Robust only: dirty NIFs must not starve a high-priority
              %% process 50 times worse than pure Erlang does.
              {overshoot_ratio, Ratio < 50}],
    case [C || {C, false} <- Checks] of
        [] -> ok;
        Failed -> {failed, Failed}
    end.

%% Runs the storm for Secs seconds against `shapebuf' or `ets'; returns
%% the readers' tallies.
storm(Kind, Secs) ->
    rand:seed(exsss, ?SEED),
    Dir = shapebuf_tests:tmpdir("storm"),
    Ctx0 = #{kind => Kind, committed => atomics:new(?SHAPES, [{signed, false}])},
    Ctx = case Kind of
              shapebuf ->
                  {ok, Store} = shapebuf:open(Dir, #{flush_bytes => 16384}),
                  Ctx0#{store => Store};
              ets ->
                  Reg = ets:new(storm_registry, [set, public, {read_concurrency, true}]),
                  Ctx0#{registry => Reg}
          end,
    Deadline = erlang:monotonic_time(millisecond) + Secs * 1000,
    Writers = [start_writer(Ctx, S) || S <- lists:seq(1, ?SHAPES)],
    [wait_started(W) || W <- Writers],
    Self = self(),
    Readers = [spawn_link(fun() ->
                                  rand:seed(exsss, {I, 4, 4}),
                                  Self ! {tally, self(), reader(Ctx, Deadline, #{})}
                          end) || I <- lists:seq(1, ?READERS)],
    %% The deploys run on time whatever the readers do.
    OldPrio = process_flag(priority, high),
    Terminations = deploys(Ctx, Writers, Deadline, 0),
    process_flag(priority, OldPrio),
    Tallies = [receive {tally, R, T} -> T end || R <- Readers],
    Sum = lists:foldl(fun(T, Acc) ->
                              maps:fold(fun(examples, Ex, A) ->
                                                A#{examples => lists:sublist(maps:get(examples, A) ++ Ex, 3)};
                                           (K, V, A) -> maps:update_with(K, fun(X) -> X + V end, V, A)
                                        end, Acc, T)
                      end, #{reads => 0, dead => 0, wrong => 0, badarg => 0, errors => 0,
                             examples => []}, Tallies),
    case Kind of
        shapebuf -> ok = shapebuf:close(maps:get(store, Ctx));
        ets -> ok
    end,
    shapebuf_tests:rm(Dir),
    Sum#{terminations => Terminations}.

%% Every ?DEPLOY_MS: stop all writers at once, then start their successors.
deploys(Ctx, Writers, Deadline, N) ->
    Now = erlang:monotonic_time(millisecond),
    case Now + ?DEPLOY_MS >= Deadline of
        true ->
            timer:sleep(max(0, Deadline - Now)),
            stop_writers(Writers),
            N + length(Writers);
        false ->
            timer:sleep(?DEPLOY_MS),
            stop_writers(Writers),
            Next = [start_writer(Ctx, S) || S <- lists:seq(1, ?SHAPES)],
            [wait_started(W) || W <- Next],
            deploys(Ctx, Next, Deadline, N + length(Writers))
    end.

stop_writers(Writers) ->
    [W ! {deploy, self()} || W <- Writers],
    [receive {stopped, W} -> ok end || W <- Writers],
    ok.

wait_started(W) -> receive {started, W} -> ok end.

start_writer(Ctx, S) ->
    Parent = self(),
    %% Writers run at high priority (a deploy's stop and takeover are not
    %% starved by the 1,000 readers); the ETS reload sleeps like a disk.
    spawn_opt(fun() -> writer_start(Ctx, S, Parent) end, [link, {priority, high}]).

writer_start(#{kind := shapebuf, store := Store, committed := C} = Ctx, S, Parent) ->
    Id = shape_id(S),
    {ok, W} = take_over(Store, Id, 200),
    Parent ! {started, self()},
    writer_loop(Ctx, S, W, atomics:get(C, S) + 1, Parent);
writer_start(#{kind := ets, registry := Reg, committed := C} = Ctx, S, Parent) ->
    Tab = ets:new(shape_tab, [ordered_set, public, {read_concurrency, true}]),
    ets:insert(Reg, {S, Tab}),
    Parent ! {started, self()},
    %% Reload the shape from "disk" in chunks: readers that look the new
    %% table up meanwhile see a part of it.
    Committed = atomics:get(C, S),
    reload(Tab, S, 1, Committed),
    writer_loop(Ctx, S, Tab, Committed + 1, Parent).

reload(_Tab, _S, Tx, Committed) when Tx > Committed -> ok;
reload(Tab, S, Tx, Committed) ->
    Upto = min(Committed, Tx + 9),
    ets:insert(Tab, lists:append([tx_entries(S, T) || T <- lists:seq(Tx, Upto)])),
    %% Reading the next chunk from disk.
    timer:sleep(1),
    reload(Tab, S, Upto + 1, Committed).

take_over(Store, Id, 0) -> shapebuf:writer(Store, Id);
take_over(Store, Id, N) ->
    case shapebuf:writer(Store, Id) of
        {error, writer_active} -> timer:sleep(5), take_over(Store, Id, N - 1);
        R -> R
    end.

shape_id(S) -> <<"shape-", (integer_to_binary(S))/binary>>.

writer_loop(#{kind := Kind, committed := C} = Ctx, S, W, Tx, Parent) ->
    receive
        {deploy, From} ->
            case Kind of
                shapebuf -> {ok, _} = shapebuf:terminate(W);
                ets -> true = ets:delete(W)
            end,
            From ! {stopped, self()}
    after 2 ->
            Es = tx_entries(S, Tx),
            case Kind of
                shapebuf ->
                    ok = shapebuf:append_many(W, Es),
                    {ok, _} = shapebuf:commit(W);
                ets ->
                    true = ets:insert(W, Es)
            end,
            ok = atomics:put(C, S, Tx),
            writer_loop(Ctx, S, W, Tx + 1, Parent)
    end.

reader(#{committed := C} = Ctx, Deadline, Tally) ->
    case erlang:monotonic_time(millisecond) >= Deadline of
        true -> Tally;
        false ->
            S = rand:uniform(?SHAPES),
            MinTx = atomics:get(C, S),
            After = case MinTx of
                        0 -> {0, 0};
                        _ -> case rand:uniform(8) of
                                 1 -> {0, 0};
                                 _ -> last_op(S, max(1, MinTx - rand:uniform(40)))
                             end
                    end,
            %% At most ?SPAN transactions: what the reader must see is the
            %% model up to min(MinTx, the span's end).
            {AfterTx, _} = After,
            Upto = {AfterTx + ?SPAN, 16#FFFF},
            Min = min(MinTx, AfterTx + ?SPAN),
            reader(Ctx, Deadline, tally(read(Ctx, S, After, Upto, Min), Tally))
    end.

tally(R, T) ->
    T1 = bump(reads, T),
    case R of
        {ok, Dead} -> case Dead of true -> bump(dead, T1); false -> T1 end;
        badarg -> bump(badarg, T1);
        {wrong, Why} -> example(Why, bump(wrong, T1));
        {error, Why} -> example({error, Why}, bump(errors, T1))
    end.

bump(K, T) -> maps:update_with(K, fun(X) -> X + 1 end, 1, T).

example(Why, T) ->
    case maps:get(examples, T, []) of
        Ex when length(Ex) < 2 -> T#{examples => Ex ++ [Why]};
        _ -> T
    end.

read(#{kind := shapebuf, store := Store}, S, After, Upto, MinTx) ->
    case shapebuf:read(Store, shape_id(S), After, Upto, #{max_entries => 1000}) of
        {ok, Es, #{dead := Dead, more := More}} ->
            case check(S, After, Es, More, MinTx) of
                ok -> {ok, Dead};
                W -> W
            end;
        {error, _} = E -> E
    end;
read(#{kind := ets, registry := Reg}, S, After, Upto, MinTx) ->
    Tab = case get({tab, S}) of
              undefined -> lookup_tab(Reg, S);
              T -> T
          end,
    MS = [{{'$1', '_'}, [{'>', '$1', {const, After}}, {'=<', '$1', {const, Upto}}], ['$_']}],
    try ets:select(Tab, MS) of
        Es ->
            case check(S, After, Es, false, MinTx) of
                ok -> {ok, false};
                W -> W
            end
    catch
        error:badarg ->
            %% The table was deleted under the reader: look it up again
            %% for the next read.
            lookup_tab(Reg, S),
            badarg
    end.

lookup_tab(Reg, S) ->
    [{S, T}] = ets:lookup(Reg, S),
    put({tab, S}, T),
    T.

%% ---- scheduler overshoot ------------------------------------------------------

%% A high-priority process loops timer:sleep(1) during a 1,000-reader storm
%% of shapebuf reads, then during the same number of calls to a pure-Erlang
%% no-op from 1,000 processes; prints both mean overshoots and the ratio.
overshoot() ->
    Dir = shapebuf_tests:tmpdir("overshoot"),
    {ok, Store} = shapebuf:open(Dir, #{flush_bytes => 1 bsl 24, max_pending_bytes => 1 bsl 25}),
    Ids = [begin
               Id = shape_id(S),
               {ok, W} = shapebuf:writer(Store, Id),
               [begin ok = shapebuf:append_many(W, tx_entries(S, Tx)), {ok, _} = shapebuf:commit(W) end
                || Tx <- lists:seq(1, 50)],
               {Id, W}
           end || S <- lists:seq(1, ?SHAPES)],
    Reads = 200,
    ReadFun = fun(Id) -> shapebuf:read(Store, Id, {0, 0}, infinity, #{max_entries => 100}) end,
    NoopFun = fun(Id) -> ?MODULE:noop_read(Store, Id, {0, 0}, infinity, #{max_entries => 100}) end,
    {SbMean, SbN, SbMs} = sleep_probe(fun() -> load(Ids, Reads, ReadFun) end),
    {NoMean, NoN, NoMs} = sleep_probe(fun() -> load(Ids, Reads, NoopFun) end),
    [shapebuf:terminate(W) || {_, W} <- Ids],
    ok = shapebuf:close(Store),
    shapebuf_tests:rm(Dir),
    Ratio = SbMean / max(NoMean, 1.0),
    io:format("overshoot: shapebuf mean ~.1f us (~b sleeps, ~b ms), pure-Erlang no-op mean ~.1f us"
              " (~b sleeps, ~b ms), ratio ~.2f~n",
              [SbMean, SbN, SbMs, NoMean, NoN, NoMs, Ratio]),
    Ratio.

%% The pure-Erlang stand-in for a read, of equal count.
noop_read(_Store, _Id, _After, _Upto, _Opts) -> {ok, [], #{dead => false, from_disk => 0, more => false}}.

%% 1,000 processes, each doing N calls of Fun on the shapes in turn.
load(Ids, N, Fun) ->
    Self = self(),
    Shapes = list_to_tuple([Id || {Id, _} <- Ids]),
    Pids = [spawn_link(fun() ->
                               [{ok, _, _} = Fun(element(1 + (I + K) rem tuple_size(Shapes), Shapes))
                                || K <- lists:seq(1, N)],
                               Self ! {loaded, self()}
                       end) || I <- lists:seq(1, ?READERS)],
    [receive {loaded, P} -> ok end || P <- Pids],
    ok.

%% Runs Load while a high-priority process sleeps 1 ms in a loop; returns
%% the mean overshoot (us), the number of sleeps and the load's duration.
sleep_probe(Load) ->
    Self = self(),
    Probe = spawn_link(fun() ->
                               process_flag(priority, high),
                               Self ! probe_ready,
                               probe_loop([])
                       end),
    receive probe_ready -> ok end,
    T0 = erlang:monotonic_time(millisecond),
    Load(),
    Ms = erlang:monotonic_time(millisecond) - T0,
    Probe ! {stop, self()},
    Over = receive {overshoots, O} -> O end,
    N = length(Over),
    {lists:sum(Over) / max(N, 1), N, Ms}.

probe_loop(Acc) ->
    receive
        {stop, From} -> From ! {overshoots, Acc}
    after 0 ->
            T0 = erlang:monotonic_time(microsecond),
            timer:sleep(1),
            D = erlang:monotonic_time(microsecond) - T0 - 1000,
            probe_loop([max(D, 0) | Acc])
    end.

%% ---- memory per subscriber ---------------------------------------------------

%% run-tests.sh runs this in a VM of its own (the RSS of a VM that ran the
%% storm has room to spare): fails unless all 100,000 are told and each
%% costs under 4 KiB.
subscribers_main() ->
    {PerSub, Delivered} = subscribers(100000),
    case Delivered =:= 100000 andalso PerSub < 4096 of
        true -> ok;
        false -> {failed, PerSub, Delivered}
    end.

%% N subscriptions (from this process, no timeout) waiting on one shape:
%% the OS process's RSS before and after, per subscription; then one commit
%% tells them all. Returns {BytesPerSubscription, MessagesReceived}.
subscribers(N) ->
    Dir = shapebuf_tests:tmpdir("subs"),
    {ok, Store} = shapebuf:open(Dir),
    {ok, W} = shapebuf:writer(Store, <<"s">>),
    %% Warm: the wake and timer threads exist, the shape's waiter state too.
    {ok, R0} = shapebuf:subscribe(Store, <<"s">>, {0, 0}, 10),
    receive {shapebuf, R0, timeout} -> ok end,
    garbage_collect(),
    Rss0 = rss(),
    Mem0 = erlang:memory(total),
    T0 = erlang:monotonic_time(millisecond),
    Refs = [begin {ok, R} = shapebuf:subscribe(Store, <<"s">>, {0, 0}, infinity), R end
            || _ <- lists:seq(1, N)],
    T1 = erlang:monotonic_time(millisecond),
    garbage_collect(),
    Rss1 = rss(),
    Mem1 = erlang:memory(total),
    %% The Erlang side holds the N refs (a list cell and a resource
    %% reference each, ~ 8 words): counted apart.
    RefWords = erts_debug:flat_size(Refs),
    PerSub = (Rss1 - Rss0) / N,
    ok = shapebuf:append(W, {1, 0}, <<"x">>),
    {ok, _} = shapebuf:commit(W),
    Got = count_committed(N, 0, 5000),
    T2 = erlang:monotonic_time(millisecond),
    io:format("subscribers: ~b waiting: RSS +~.1f bytes each (VM-counted +~.1f, of which ~.1f the "
              "Erlang list of refs); subscribe ~.1f us each; one commit told ~b in ~b ms~n",
              [N, PerSub, (Mem1 - Mem0) / N, RefWords * 8 / N, (T1 - T0) * 1000 / N, Got, T2 - T1]),
    {ok, _} = shapebuf:terminate(W),
    ok = shapebuf:close(Store),
    shapebuf_tests:rm(Dir),
    {PerSub, Got}.

count_committed(0, Got, _) -> Got;
count_committed(N, Got, Timeout) ->
    receive {shapebuf, _, {committed, {1, 0}}} -> count_committed(N - 1, Got + 1, Timeout)
    after Timeout -> Got
    end.

rss() ->
    {ok, Status} = file:read_file("/proc/" ++ os:getpid() ++ "/status"),
    {match, [Kb]} = re:run(Status, "VmRSS:\\s+(\\d+) kB", [{capture, all_but_first, binary}]),
    binary_to_integer(Kb) * 1024.

%% ---- the ETS read bench -------------------------------------------------------

%% Reads of 1, 100 and 1000 entries of 100 bytes from per-shape ETS
%% ordered_set tables (ets:select with a key guard; ets:next walk) and from
%% shapebuf (live shapes, in memory; and terminated shapes, from disk), by
%% 1,000 processes for about 2 s each. Prints one line per case.
bench() ->
    Secs = case os:getenv("BENCH_SECONDS") of
               false -> 2;
               V -> list_to_integer(V)
           end,
    io:format("ETS read bench: ~b processes, ~b shapes, 100-byte payloads, ~b s per case, "
              "~b schedulers, ~b dirty I/O schedulers~n",
              [?READERS, ?SHAPES, Secs, erlang:system_info(schedulers_online),
               erlang:system_info(dirty_io_schedulers)]),
    io:format("~-22s ~8s ~12s ~14s~n", ["case", "entries", "reads/s", "cpu-us/read"]),
    [bench_n(N, Secs) || N <- [1, 100, 1000]],
    ok.

bench_n(N, Secs) ->
    Payload = binary:copy(<<"x">>, 100),
    Entries = [{{1, Op}, Payload} || Op <- lists:seq(0, N - 1)],
    Tabs = list_to_tuple([begin
                              T = ets:new(bench, [ordered_set, public, {read_concurrency, true}]),
                              true = ets:insert(T, Entries),
                              T
                          end || _ <- lists:seq(1, ?SHAPES)]),
    After = {0, 0},
    MS = [{{'$1', '_'}, [{'>', '$1', {const, After}}], ['$_']}],
    report("ets:select", N, Secs, fun(I) ->
        Es = ets:select(element(I, Tabs), MS),
        N = length(Es)
    end),
    report("ets:next", N, Secs, fun(I) ->
        N = ets_walk(element(I, Tabs), ets:next(element(I, Tabs), After), 0)
    end),
    [ets:delete(T) || T <- tuple_to_list(Tabs)],
    Dir = shapebuf_tests:tmpdir("bench"),
    {ok, Store} = shapebuf:open(Dir, #{flush_bytes => 1 bsl 24, max_pending_bytes => 1 bsl 25}),
    Ws = [begin
              {ok, W} = shapebuf:writer(Store, shape_id(S)),
              ok = shapebuf:append_many(W, Entries),
              {ok, _} = shapebuf:commit(W),
              W
          end || S <- lists:seq(1, ?SHAPES)],
    Ids = list_to_tuple([shape_id(S) || S <- lists:seq(1, ?SHAPES)]),
    Read = fun(I) ->
        {ok, Es, #{more := false}} = shapebuf:read(Store, element(I, Ids), After, infinity,
                                                   #{max_entries => 1000}),
        N = length(Es)
    end,
    report("shapebuf (memory)", N, Secs, Read),
    [{ok, _} = shapebuf:terminate(W) || W <- Ws],
    report("shapebuf (dead, disk)", N, Secs, Read),
    ok = shapebuf:close(Store),
    shapebuf_tests:rm(Dir).

ets_walk(_Tab, '$end_of_table', N) -> N;
ets_walk(Tab, Key, N) ->
    [_] = ets:lookup(Tab, Key),
    ets_walk(Tab, ets:next(Tab, Key), N + 1).

report(Name, N, Secs, Fun) ->
    Self = self(),
    Deadline = erlang:monotonic_time(millisecond) + Secs * 1000,
    T0 = erlang:monotonic_time(microsecond),
    Pids = [spawn_link(fun() -> Self ! {count, self(), bench_loop(Fun, I, Deadline, 0)} end)
            || I <- lists:seq(1, ?READERS)],
    Total = lists:sum([receive {count, P, C} -> C end || P <- Pids]),
    Us = erlang:monotonic_time(microsecond) - T0,
    Cores = erlang:system_info(logical_processors_available),
    CoresN = case Cores of unknown -> erlang:system_info(schedulers_online); C -> C end,
    io:format("~-22s ~8b ~12b ~14.2f~n",
              [Name, N, round(Total * 1.0e6 / Us), Us * CoresN / max(Total, 1)]).

bench_loop(Fun, I, Deadline, C) ->
    case C rem 16 =:= 0 andalso erlang:monotonic_time(millisecond) >= Deadline of
        true -> C;
        false ->
            Fun(1 + I rem ?SHAPES),
            bench_loop(Fun, I, Deadline, C + 1)
    end.
