-- 002: replay progress of `carsys-ingest dlq replay`, so that a second run (or a run resumed after a crash) does not
-- republish what an earlier one already did, and `dlq list` can say how many letters were replayed.
--
-- One row per original record (dlq.original.*), not per letter: the same record can be dead-lettered twice (a worker
-- crash between the letter's acknowledgement and the source commit) and must be replayed once. A record that fails
-- again after its replay is a new record (it was republished at a new offset), hence a new letter and a new row.
-- No payloads and no keys here: only coordinates (AVG/GDPR: erasure never has to look in this table).

CREATE TABLE dlq_replays (
    original_topic      text        NOT NULL,
    original_partition  integer     NOT NULL,
    original_offset     bigint      NOT NULL,
    dlq_topic           text        NOT NULL,  -- the letter that was replayed
    dlq_partition       integer     NOT NULL,
    dlq_offset          bigint      NOT NULL,
    replay_count        integer     NOT NULL,  -- dlq.replay.count carried by the republished record
    replayed_partition  integer     NOT NULL,  -- where the republished record landed in original_topic
    replayed_offset     bigint      NOT NULL,
    replayed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (original_topic, original_partition, original_offset)
);

CREATE INDEX dlq_replays_dlq_idx ON dlq_replays (dlq_topic, dlq_partition, dlq_offset);
