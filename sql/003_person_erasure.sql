-- 003: an erased person (AVG/GDPR, `carsys-ingest erase`) stays as a tombstone without personal data.
--
-- Deleting the row would let any older event for the person (a replayed dead letter, a consumer-group reset, a
-- redelivery past the applied-event retention) write the person back. The tombstone keeps the row's
-- (occurred_at, event_id) guard at the moment of erasure, so only an event newer than the erasure (the person is a
-- customer again, a new basis for processing) can fill it in. erased_at records the last erasure.
ALTER TABLE persons ADD COLUMN erased_at timestamptz;
