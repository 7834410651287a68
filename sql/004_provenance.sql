-- 004: provenance. Every stored row says which Kafka record wrote it last (source topic/partition/offset, next to the
-- event id already there), and applied_events says which appointment each event id was about and where it came
-- from, so `carsys-ingest trace` can answer "where did this row come from" and "which events for this appointment
-- were seen but did not win" (within APPLIED_EVENT_RETENTION_DAYS, the retention of applied_events).
--
-- All columns are nullable without a default (a metadata-only change, no table rewrite): rows written before this
-- migration, and rows written by `erase` (the erasure is not a record), have none. Coordinates only, no values.

ALTER TABLE appointments
    ADD COLUMN source_topic      text,
    ADD COLUMN source_partition  integer,
    ADD COLUMN source_offset     bigint;

ALTER TABLE interventions
    ADD COLUMN source_topic      text,
    ADD COLUMN source_partition  integer,
    ADD COLUMN source_offset     bigint;

ALTER TABLE persons
    ADD COLUMN source_topic      text,
    ADD COLUMN source_partition  integer,
    ADD COLUMN source_offset     bigint;

ALTER TABLE vehicles
    ADD COLUMN source_topic      text,
    ADD COLUMN source_partition  integer,
    ADD COLUMN source_offset     bigint;

ALTER TABLE applied_events
    ADD COLUMN dealer_id         varchar(64),
    ADD COLUMN dms_number        text,
    ADD COLUMN occurred_at       timestamptz,
    ADD COLUMN source_topic      text,
    ADD COLUMN source_partition  integer,
    ADD COLUMN source_offset     bigint;

-- Partial: rows recorded before this migration have no key, so building the index reads the table but stores nothing.
CREATE INDEX applied_events_key_idx ON applied_events (dealer_id, dms_number) WHERE dealer_id IS NOT NULL;
