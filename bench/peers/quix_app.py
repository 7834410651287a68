"""The Quix Streams peer: the Carsys topic into the same four tables with Quix's community PostgreSQLSink.

Runs in its own virtualenv (bench/peers/quix-requirements.txt, made by bench/peers/fetch.py), never the project's:

    <quix venv>/bin/python bench/peers/quix_app.py --bootstrap H:P --topic T --group G --dsn-port 5432 \
        --dbname D --status FILE

What a user would write with it: one JSON event in, one branch per table, each row upserted on its primary key
(``upsert_on_primary_key``), values as they arrive (no normalising, no newest-wins guard, no dead-letter topic,
Quix's default error handling: an exception stops the application). Standard library + quixstreams only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from quixstreams import Application  # type: ignore[import-not-found]
from quixstreams.sinks.community.postgresql import PostgreSQLSink  # type: ignore[import-not-found]

UPSERTED = "appointment.upserted"
Row = dict[str, Any]


def vehicle_key(vehicle: Row) -> str:
    return str(vehicle.get("vin") or vehicle.get("license_plate") or "")


def appointment_row(event: Row) -> Row:
    a = event["appointment"]
    row = {
        "dealer_id": event["dealer_id"],
        "dms_number": a["dms_number"],
        "event_id": event["event_id"],
        "occurred_at": event["occurred_at"],
        "deleted": event["event_type"] != UPSERTED,
    }
    if event["event_type"] == UPSERTED:
        row |= {k: a.get(k) for k in ("wo_number", "appointment_at", "created_at", "waiting_customer")}
        row["vehicle_key"] = vehicle_key(a["vehicle"])
        row["person_ids"] = [p["id"] for p in a["persons"]]
    return row


def intervention_rows(event: Row) -> list[Row]:
    if event["event_type"] != UPSERTED:
        return []
    a, dealer = event["appointment"], event["dealer_id"]
    return [
        {"dealer_id": dealer, "dms_number": a["dms_number"], "position": i, **item}
        for i, item in enumerate(a["interventions"])
    ]


def vehicle_rows(event: Row) -> list[Row]:
    if event["event_type"] != UPSERTED:
        return []
    vehicle = event["appointment"]["vehicle"]
    return [{"dealer_id": event["dealer_id"], "vehicle_key": vehicle_key(vehicle), **vehicle}]


def person_rows(event: Row) -> list[Row]:
    if event["event_type"] != UPSERTED:
        return []
    return [
        {"dealer_id": event["dealer_id"], "person_id": p["id"], **{k: v for k, v in p.items() if k != "id"}}
        for p in event["appointment"]["persons"]
    ]


KEYS = {
    "appointments": ["dealer_id", "dms_number"],
    "interventions": ["dealer_id", "dms_number", "position"],
    "vehicles": ["dealer_id", "vehicle_key"],
    "persons": ["dealer_id", "person_id"],
}


class FirstMessage:
    """Writes when the first event reached the pipeline and the process' CPU then: the measured window's start."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, False

    def __call__(self, event: Row) -> Row:
        if not self.seen:
            self.seen = True
            self.path.write_text(json.dumps({"first_message": time.time(), "cpu_s": time.process_time()}))
        return event


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--bootstrap", "--topic", "--group", "--host", "--dbname", "--status", "--state-dir"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--commit-interval", type=float, default=1.0)
    args = parser.parse_args()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    sdf = app.dataframe(app.topic(args.topic, value_deserializer="json"))
    sdf = sdf.update(FirstMessage(Path(args.status)))

    def sink(table: str) -> Any:
        return PostgreSQLSink(
            host=args.host,
            port=args.port,
            dbname=args.dbname,
            user="postgres",
            password="",
            table_name=table,
            primary_key_columns=KEYS[table],
            upsert_on_primary_key=True,
        )

    sdf.apply(appointment_row).sink(sink("appointments"))
    sdf.apply(intervention_rows, expand=True).sink(sink("interventions"))
    sdf.apply(vehicle_rows, expand=True).sink(sink("vehicles"))
    sdf.apply(person_rows, expand=True).sink(sink("persons"))
    app.run()


if __name__ == "__main__":
    main()
