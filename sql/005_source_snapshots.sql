-- 005: source snapshots and the normaliser version, so that stored rows can be re-normalised when the rules improve
-- (`carsys-ingest renormalise`) and "which rows are still on the old rules?" is one query.
--
-- source: the part of the winning event this row was normalised from, as it arrived (decoded, before normalising),
-- written in the same statement as the row, so it follows the same newest-wins guard. Each row holds only its own
-- part: a person's row its person, a vehicle's row its vehicle, an appointment's row the appointment without its
-- vehicle and persons. No snapshot holds another row's personal values, so erasure clears exactly the person's row
-- (and the role links to them in vehicle snapshots). NULL for rows written before 005, tombstones and erased persons.
-- normaliser_version: worker.normalise.version.NORMALISER_VERSION of the code that produced the row's values.
-- json, not jsonb: the text is kept as the worker encoded it (msgspec), which costs PostgreSQL less than building
-- jsonb in every batch (measured: docs/benchmarks.md#source-snapshots-what-they-cost); `->>` works on both.
-- Retention and purpose: docs/guarantees.md#source-snapshots.
ALTER TABLE persons ADD COLUMN source json, ADD COLUMN normaliser_version integer;
ALTER TABLE vehicles ADD COLUMN source json, ADD COLUMN normaliser_version integer;
ALTER TABLE appointments ADD COLUMN source json, ADD COLUMN normaliser_version integer;
