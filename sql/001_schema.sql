-- 001: the tables Claire reads, plus the worker's bookkeeping (applied event ids, consumer offsets).
--
-- Every data row carries occurred_at + event_id of the event that last wrote it: the store only overwrites a row
-- with a strictly newer (occurred_at, event_id), which makes replays and out-of-order delivery converge.
-- notes hold the normaliser's {field, rule, action} records, never values.
-- Links between rows (vehicle -> persons, appointment -> vehicle/persons) are plain ids without foreign keys on
-- purpose: events of one dealer arrive on different partitions in any order, so a referenced person may be
-- written after the row that refers to it.

CREATE TABLE persons (
    dealer_id              varchar(64) NOT NULL,
    person_id              text        NOT NULL,
    company_name           text,
    title                  text,
    first_name             text,
    last_name              text,
    street                 text,
    house_number           text,
    house_number_addition  text,
    postcode               text,
    city                   text,
    email_private          text,
    phone_private          text,
    mobile_private         text,
    email_business         text,
    phone_business         text,
    mobile_business        text,
    preferred_email        text,
    preferred_mobile       text,
    notes                  jsonb       NOT NULL DEFAULT '[]',
    occurred_at            timestamptz NOT NULL,
    event_id               uuid        NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dealer_id, person_id)
);

-- Claire finds the customer at the key locker by the driver's mobile number.
CREATE INDEX persons_preferred_mobile_idx ON persons (dealer_id, preferred_mobile)
    WHERE preferred_mobile IS NOT NULL;

CREATE TABLE vehicles (
    dealer_id                varchar(64) NOT NULL,
    -- 'vin:<VIN>' when the VIN is valid, else 'plate:<license_plate_key>' (see worker.model.Vehicle).
    vehicle_key              text        NOT NULL,
    make                     text,
    model                    text,
    license_plate            text,
    license_plate_key        text,
    vin                      text,
    fuel                     text,
    first_registration_date  date,
    apk_due_date             date,
    -- role links to persons.person_id of the same dealer
    driver_id                text,
    owner_id                 text,
    contractor_id            text,
    notes                    jsonb       NOT NULL DEFAULT '[]',
    occurred_at              timestamptz NOT NULL,
    event_id                 uuid        NOT NULL,
    updated_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dealer_id, vehicle_key)
);

-- Claire finds the vehicle at the key locker by its plate.
CREATE INDEX vehicles_license_plate_key_idx ON vehicles (dealer_id, license_plate_key)
    WHERE license_plate_key IS NOT NULL;

CREATE TABLE appointments (
    dealer_id         varchar(64) NOT NULL,
    dms_number        text        NOT NULL,
    wo_number         text,
    appointment_at    timestamptz,
    -- NULL only for a tombstone of an appointment whose upsert was never seen
    created_at        timestamptz,
    waiting_customer  boolean     NOT NULL DEFAULT false,
    vehicle_key       text,  -- link to vehicles(dealer_id, vehicle_key)
    person_ids        text[]      NOT NULL DEFAULT '{}',  -- links to persons(dealer_id, person_id)
    -- Soft delete: a tombstone keeps occurred_at so that a late, older upsert cannot resurrect the appointment.
    deleted           boolean     NOT NULL DEFAULT false,
    deleted_at        timestamptz,
    notes             jsonb       NOT NULL DEFAULT '[]',
    occurred_at       timestamptz NOT NULL,
    event_id          uuid        NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dealer_id, dms_number),
    CONSTRAINT appointments_live_has_created_at CHECK (deleted OR created_at IS NOT NULL),
    CONSTRAINT appointments_deleted_at CHECK (deleted = (deleted_at IS NOT NULL))
);

CREATE INDEX appointments_vehicle_idx ON appointments (dealer_id, vehicle_key) WHERE vehicle_key IS NOT NULL;
CREATE INDEX appointments_appointment_at_idx ON appointments (dealer_id, appointment_at) WHERE NOT deleted;

-- Replaced as a set whenever a newer snapshot of the appointment is written.
CREATE TABLE interventions (
    dealer_id    varchar(64)    NOT NULL,
    dms_number   text           NOT NULL,
    position     integer        NOT NULL,  -- order within the snapshot, from 0
    title        text           NOT NULL,
    description  text,
    price        numeric(12, 2),  -- euros; whole cents, never a float
    occurred_at  timestamptz    NOT NULL,
    event_id     uuid           NOT NULL,
    PRIMARY KEY (dealer_id, dms_number, position),
    FOREIGN KEY (dealer_id, dms_number) REFERENCES appointments (dealer_id, dms_number) ON DELETE CASCADE
);

-- Duplicate detection: an event id found here is a no-op. Pruned after APPLIED_EVENT_RETENTION_DAYS; a replay
-- older than that is still harmless because of the (occurred_at, event_id) guard on every row.
CREATE TABLE applied_events (
    event_id    uuid        PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX applied_events_applied_at_idx ON applied_events (applied_at);

-- Written in the same transaction as the data: the consumer resumes from here, not from Kafka's committed offset.
CREATE TABLE consumer_offsets (
    group_id     text        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    next_offset  bigint      NOT NULL,  -- the next record to consume
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
