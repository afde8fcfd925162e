%% @doc shapebuf from Erlang: a store of append-only shape logs, read by any
%% number of processes while their writers flush, terminate and take over.
%%
%% The work is done in a NIF (`priv/shapebuf_nif.so', built from
%% `native/' with rustler); this module checks arguments, documents the
%% API and maps `infinity' and option maps to what the NIF takes.
%%
%% == Schedulers ==
%% Every call that may touch the disk, take a lock a dirty call may hold,
%% or sleep runs on a dirty I/O scheduler: `open', `close', `writer',
%% `append', `append_many', `commit', `flush', `terminate', `remove',
%% `read', `committed', `subscribe', `unsubscribe', and also `stats',
%% `durable_offset', `track_commit', `(un)subscribe_durable' (they read
%% counters under locks that dirty calls hold around file operations):
%% no call runs on a normal scheduler. A subscription's
%% wait holds no scheduler at all: the store's wake thread sends its
%% message. Resources are never released on the collecting scheduler when
%% that may block (a writer's release flushes): the binding's reaper
%% thread does it.
%%
%% == Replies ==
%% Offsets are `{Tx, Op}' (non-negative integers, ordered as tuples).
%% Every expected failure is `{error, Reason}':
%% <ul>
%% <li>`closed': the store was closed, or the writer was terminated,
%%     closed, or released after its owner died.</li>
%% <li>`locked': another store (in this VM or another OS process) has the
%%     directory open.</li>
%% <li>`not_found': no such shape.</li>
%% <li>`not_owner': a writer used by a process other than its owner.</li>
%% <li>`writer_active': the shape already has a live writer.</li>
%% <li>`removed': the shape was removed (while this call ran, or the writer's
%%     shape).</li>
%% <li>`{out_of_order, Last}': append at or below the last offset `Last'.</li>
%% <li>`zero_offset': `{0, 0}' cannot hold an entry.</li>
%% <li>`{payload_too_large, Max}', `bad_shape_id' (empty or too long).</li>
%% <li>`{offset_collected, Earliest}': the range's start was collected.</li>
%% <li>`{writer_closed, Why}': the writer failed an earlier write.</li>
%% <li>`{corrupt, Msg}', `{io, Msg}' (`Msg' a binary).</li>
%% <li>`{invalid_config, Key}': `open/2' got an unknown key or a bad
%%     value.</li>
%% <li>`{other, Msg}': an error this binding does not know yet.</li>
%% </ul>
%% `badarg' is raised only for arguments of the wrong type.
%%
%% == Messages ==
%% `subscribe/4' answers `{ok, Ref}', then sends exactly one
%% `{shapebuf, Ref, Outcome}' unless `unsubscribe(Ref)' came first:
%% `{committed, {Tx, Op}}' (the last committed offset, past `After'),
%% `timeout', `terminated', `writer_dropped' (the writer's owner died or
%% dropped it), `removed', or `closed' (the store was closed).
%%
%% `subscribe_durable/1' answers `{ok, Ref}' and then sends, until
%% `unsubscribe_durable/2' or the subscriber's death, one message per flush
%% tracker event, in order: `{shapebuf, Ref, {durable, {Tx, Op}}}' (the
%% global durable offset advanced) or `{shapebuf, Ref, {lost, ShapeId,
%% After}}' (a shape lost data past `After' that was not durable).
-module(shapebuf).

-export([open/1, open/2, close/1,
         writer/2, append/3, append_many/2, commit/1, flush/1, tick/1, terminate/1,
         remove/2,
         read/4, read/5, committed/2,
         subscribe/4, unsubscribe/1,
         durable_offset/1, track_commit/3, subscribe_durable/1, unsubscribe_durable/2,
         stats/1]).

-on_load(init/0).

-define(MAX_U64, 16#FFFFFFFFFFFFFFFF).
-define(DEFAULT_MAX_ENTRIES, 1000).
-define(is_offset(O), (is_tuple(O) andalso tuple_size(O) =:= 2
                       andalso is_integer(element(1, O)) andalso element(1, O) >= 0
                       andalso element(1, O) =< ?MAX_U64
                       andalso is_integer(element(2, O)) andalso element(2, O) >= 0
                       andalso element(2, O) =< ?MAX_U64)).

-type store() :: reference().
-type writer() :: reference().
-type sub() :: reference().
-type offset() :: {non_neg_integer(), non_neg_integer()}.
-type reason() :: atom() | {atom(), term()}.
-type read_info() :: #{dead := boolean(), from_disk := non_neg_integer(),
                       more := boolean()}.
-type flushed() :: #{persisted := offset(), committed := offset()}.
-export_type([store/0, writer/0, sub/0, offset/0, reason/0]).

init() ->
    Priv = case code:priv_dir(shapebuf) of
               {error, _} ->
                   filename:join(filename:dirname(filename:dirname(code:which(?MODULE))),
                                 "priv");
               Dir -> Dir
           end,
    erlang:load_nif(filename:join(Priv, "shapebuf_nif"), 0).

%% @doc Opens (creating if needed) the store in directory `Dir' with default
%% settings. Dirty I/O (locks, creates, syncs and lists the directory).
-spec open(file:name_all()) -> {ok, store()} | {error, reason()}.
open(Dir) -> open(Dir, #{}).

%% @doc Opens the store in `Dir' with settings `Config', a map with any of
%% `flush_bytes', `max_pending_bytes', `flush_interval_ms',
%% `segment_capacity', `retain_bytes', `index_interval', `file_bytes',
%% `flush_threads', `max_payload', `max_open_files' (non-negative
%% integers; see the library's `Config'). An unknown key or a value out of
%% range is `{error, {invalid_config, Key}}'. A directory another store
%% has open is `{error, locked}'.
-spec open(file:name_all(), map()) -> {ok, store()} | {error, reason()}.
open(Dir, Config) when is_map(Config) ->
    nif_open(dir_binary(Dir), Config);
open(_, _) -> erlang:error(badarg).

%% @doc Closes the store: terminates every writer opened through it (their
%% committed data flushed and synced, open transactions discarded), ends
%% its subscriptions with `closed', and releases the directory before it
%% returns. Later calls on the store or its writers are `{error, closed}'.
%% Dirty I/O.
-spec close(store()) -> ok | {error, reason()}.
close(Store) when is_reference(Store) -> nif_close(Store);
close(_) -> erlang:error(badarg).

%% @doc The writer of shape `Id' (a binary), creating the shape if it is
%% new. It belongs to the calling process: calls from others are
%% `{error, not_owner}', and the owner's death releases it (what it
%% committed is flushed; its open transaction is discarded, as after a
%% crash; the next writer recovers the shape). Dirty I/O (recovery).
-spec writer(store(), binary()) -> {ok, writer()} | {error, reason()}.
writer(Store, Id) when is_reference(Store), is_binary(Id) -> nif_writer(Store, Id);
writer(_, _) -> erlang:error(badarg).

%% @doc Appends `Payload' at `Offset' to the open transaction (invisible
%% until `commit/1'). The payload is copied once. Dirty I/O (may wait for
%% a flush under back-pressure).
-spec append(writer(), offset(), binary()) -> ok | {error, reason()}.
append(W, Offset, Payload) when is_reference(W), ?is_offset(Offset), is_binary(Payload) ->
    nif_append(W, Offset, Payload);
append(_, _, _) -> erlang:error(badarg).

%% @doc Appends `[{Offset, Payload}]' in order; stops at the first error
%% (the entries before it stay appended). Dirty I/O.
-spec append_many(writer(), [{offset(), binary()}]) -> ok | {error, reason()}.
append_many(W, Entries) when is_reference(W), is_list(Entries) ->
    lists:all(fun({O, P}) -> ?is_offset(O) andalso is_binary(P);
                 (_) -> false
              end, Entries) orelse erlang:error(badarg),
    nif_append_many(W, Entries);
append_many(_, _) -> erlang:error(badarg).

%% @doc Commits the open transaction: readers see it, subscribers are told.
%% Returns the last committed offset. Dirty I/O.
-spec commit(writer()) -> {ok, offset()} | {error, reason()}.
commit(W) when is_reference(W) -> nif_commit(W);
commit(_) -> erlang:error(badarg).

%% @doc Writes and syncs everything appended; returns what is durable.
%% Dirty I/O.
-spec flush(writer()) -> {ok, flushed()} | {error, reason()}.
flush(W) when is_reference(W) -> nif_flush(W);
flush(_) -> erlang:error(badarg).

%% @doc Flushes if anything is pending and `flush_interval_ms' (default
%% 1000) passed since the last flush; returns whether it flushed. Not
%% needed for durability: the store's own timer makes committed data
%% durable within `flush_interval_ms' with no call from the host. Dirty
%% I/O.
-spec tick(writer()) -> {ok, boolean()} | {error, reason()}.
tick(W) when is_reference(W) -> nif_tick(W);
tick(_) -> erlang:error(badarg).

%% @doc Flushes, then retires the shape's buffer: readers find it dead and
%% read from disk, subscribers get `terminated'. The open transaction is
%% discarded. Later calls on the writer are `{error, closed}'. Dirty I/O.
-spec terminate(writer()) -> {ok, flushed()} | {error, reason()}.
terminate(W) when is_reference(W) -> nif_terminate(W);
terminate(_) -> erlang:error(badarg).

%% @doc Removes shape `Id' and its files: reads already under way finish
%% exactly; later ones are `{error, not_found}' (or `removed' for a read
%% that raced it); subscribers get `removed'. A shape with a live writer
%% is `{error, writer_active}' (terminate it first). Dirty I/O (a synced
%% tombstone).
-spec remove(store(), binary()) -> ok | {error, reason()}.
remove(Store, Id) when is_reference(Store), is_binary(Id) -> nif_remove(Store, Id);
remove(_, _) -> erlang:error(badarg).

%% @doc `read(Store, Id, After, Upto, #{})'.
-spec read(store(), binary(), offset(), offset() | infinity) ->
          {ok, [{offset(), binary()}], read_info()} | {error, reason()}.
read(Store, Id, After, Upto) -> read(Store, Id, After, Upto, #{}).

%% @doc The committed entries of shape `Id' with offsets in `(After, Upto]'
%% (`Upto' may be `infinity'), in order, at most `max_entries' of them
%% (option, default 1000). `more' says whether the range held more: read
%% on from the last offset returned. `dead' says the shape had no live
%% writer (served from disk); `from_disk' how many entries came from disk.
%% The payloads are sub-binaries of one binary per read. Dirty I/O.
-spec read(store(), binary(), offset(), offset() | infinity, map()) ->
          {ok, [{offset(), binary()}], read_info()} | {error, reason()}.
read(Store, Id, After, Upto0, Opts)
  when is_reference(Store), is_binary(Id), ?is_offset(After), is_map(Opts) ->
    Upto = case Upto0 of
               infinity -> {?MAX_U64, ?MAX_U64};
               _ when ?is_offset(Upto0) -> Upto0;
               _ -> erlang:error(badarg)
           end,
    Max = maps:get(max_entries, Opts, ?DEFAULT_MAX_ENTRIES),
    (is_integer(Max) andalso Max >= 0) orelse erlang:error(badarg),
    nif_read(Store, Id, After, Upto, Max);
read(_, _, _, _, _) -> erlang:error(badarg).

%% @doc The offset of the last committed entry of shape `Id' (`{0, 0}' if
%% none). Dirty I/O (may recover the shape).
-spec committed(store(), binary()) -> {ok, offset()} | {error, reason()}.
committed(Store, Id) when is_reference(Store), is_binary(Id) -> nif_committed(Store, Id);
committed(_, _) -> erlang:error(badarg).

%% @doc Subscribes the calling process to shape `Id' past `After': one
%% message `{shapebuf, Ref, Outcome}' follows (see the module doc), at the
%% latest after `TimeoutMs' milliseconds (`timeout'; or `infinity'). If
%% something past `After' is committed already, the message is sent at
%% once. The subscriber is monitored: its death drops the wait. The wait
%% holds no scheduler. Dirty I/O for the first check only.
-spec subscribe(store(), binary(), offset(), timeout()) -> {ok, sub()} | {error, reason()}.
subscribe(Store, Id, After, Timeout)
  when is_reference(Store), is_binary(Id), ?is_offset(After),
       (Timeout =:= infinity orelse (is_integer(Timeout) andalso Timeout >= 0
                                     andalso Timeout < 16#7FFFFFFFFFFFFFFF)) ->
    Ms = case Timeout of infinity -> -1; _ -> Timeout end,
    nif_subscribe(Store, Id, After, Ms);
subscribe(_, _, _, _) -> erlang:error(badarg).

%% @doc Ends a subscription; no message for it is in the mailbox or comes
%% after this returns. Dirty I/O (waits for a poll in progress).
-spec unsubscribe(sub()) -> ok.
unsubscribe(Ref) when is_reference(Ref) ->
    ok = nif_unsubscribe(Ref),
    receive {shapebuf, Ref, _} -> ok after 0 -> ok end;
unsubscribe(_) -> erlang:error(badarg).

%% @doc The store's global durable offset (its flush tracker's): every
%% transaction up to it that was reported with `track_commit/3' is
%% durable in every shape that received it. Dirty I/O (the tracker's mutex
%% is taken by writers' flushes on dirty schedulers).
-spec durable_offset(store()) -> {ok, offset()} | {error, reason()}.
durable_offset(Store) when is_reference(Store) -> nif_durable_offset(Store);
durable_offset(_) -> erlang:error(badarg).

%% @doc Reports to the flush tracker a committed upstream transaction
%% ending at `End', in which each `{Id, Last}' shape received entries up to
%% `Last' (call the writers' `commit/1' first). Returns the global durable
%% offset after it; it moves past `End' once those shapes have flushed
%% `Last'. `{error, {commit_out_of_order, Last}}' if `End' is not past the
%% last reported end. Dirty I/O.
-spec track_commit(store(), offset(), [{binary(), offset()}]) ->
          {ok, offset()} | {error, reason()}.
track_commit(Store, End, Received) when is_reference(Store), ?is_offset(End), is_list(Received) ->
    lists:all(fun({Id, O}) -> is_binary(Id) andalso ?is_offset(O);
                 (_) -> false
              end, Received) orelse erlang:error(badarg),
    nif_track_commit(Store, End, Received);
track_commit(_, _, _) -> erlang:error(badarg).

%% @doc Streams the flush tracker's events to the calling process (see the
%% module doc). Dirty I/O.
-spec subscribe_durable(store()) -> {ok, reference()} | {error, reason()}.
subscribe_durable(Store) when is_reference(Store) -> nif_subscribe_durable(Store);
subscribe_durable(_) -> erlang:error(badarg).

%% @doc Stops a `subscribe_durable/1' stream; flushes its messages from the
%% mailbox, and none comes after. Dirty I/O.
-spec unsubscribe_durable(store(), reference()) -> ok.
unsubscribe_durable(Store, Ref) when is_reference(Store), is_reference(Ref) ->
    ok = nif_unsubscribe_durable(Store, Ref),
    flush_durable(Ref);
unsubscribe_durable(_, _) -> erlang:error(badarg).

%% @doc The library's `Store::stats': `shape_count', `shapes_open',
%% `live_writers', `quarantined', `entries_not_durable', `memory_bytes',
%% `retired_bytes', `flushes', `flushed_bytes', `flush_errors',
%% `sync_p50_us', `sync_p99_us', `open_files', `peak_open_files'. Dirty
%% I/O (one pass over the shapes, and counters read under locks the dirty
%% calls take).
-spec stats(store()) -> {ok, #{atom() => non_neg_integer()}} | {error, reason()}.
stats(Store) when is_reference(Store) -> nif_stats(Store);
stats(_) -> erlang:error(badarg).

%% ---- internal -------------------------------------------------------------

flush_durable(Ref) ->
    receive {shapebuf, Ref, _} -> flush_durable(Ref) after 0 -> ok end.

dir_binary(Dir) when is_binary(Dir) -> Dir;
dir_binary(Dir) when is_list(Dir); is_atom(Dir) ->
    case unicode:characters_to_binary(filename:flatten(Dir)) of
        B when is_binary(B) -> B;
        _ -> erlang:error(badarg)
    end;
dir_binary(_) -> erlang:error(badarg).

nif_open(_, _) -> erlang:nif_error(not_loaded).
nif_close(_) -> erlang:nif_error(not_loaded).
nif_writer(_, _) -> erlang:nif_error(not_loaded).
nif_append(_, _, _) -> erlang:nif_error(not_loaded).
nif_append_many(_, _) -> erlang:nif_error(not_loaded).
nif_commit(_) -> erlang:nif_error(not_loaded).
nif_flush(_) -> erlang:nif_error(not_loaded).
nif_tick(_) -> erlang:nif_error(not_loaded).
nif_terminate(_) -> erlang:nif_error(not_loaded).
nif_remove(_, _) -> erlang:nif_error(not_loaded).
nif_read(_, _, _, _, _) -> erlang:nif_error(not_loaded).
nif_committed(_, _) -> erlang:nif_error(not_loaded).
nif_subscribe(_, _, _, _) -> erlang:nif_error(not_loaded).
nif_unsubscribe(_) -> erlang:nif_error(not_loaded).
nif_durable_offset(_) -> erlang:nif_error(not_loaded).
nif_track_commit(_, _, _) -> erlang:nif_error(not_loaded).
nif_subscribe_durable(_) -> erlang:nif_error(not_loaded).
nif_unsubscribe_durable(_, _) -> erlang:nif_error(not_loaded).
nif_stats(_) -> erlang:nif_error(not_loaded).
