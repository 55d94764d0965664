"""Canonical Arrow schemas: the only place a column of the warehouse is defined.

DuckDB DDL, Parquet files, validation in ``transform``, ``shipetl schema`` and the column reference in
``docs/schema.md`` are all produced from the tables below.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = 1
UTC = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(18, 4)


def col(name: str, type_: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    """A canonical column: its one-line description travels in the field metadata."""
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


COMMON = [
    col("provider", pa.string(), "Plugin name of the source's provider (shipengine, shopee, ...)", False),
    col("account_id", pa.string(), "Shop, store or API account the row came from", False),
    col("run_id", pa.string(), "Run that loaded the row", False),
    col("extracted_at", UTC, "When the run fetched the row (UTC)", False),
]


@dataclass(frozen=True)
class Table:
    """A canonical table: its columns, its dedup key and the column that picks its Parquet partition.

    ``newest_first``: SQL order terms that put the newer of two snapshots of one entity first, for a run that
    saw the entity twice within one file of pages (a listing by update time that changes while it is paged).
    """

    name: str
    description: str
    columns: tuple[pa.Field, ...]
    key: tuple[str, ...]
    entity_key: tuple[str, ...]
    partition_time: str
    newest_first: tuple[str, ...] = ()

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(list(self.columns), metadata={"table": self.name, "version": str(SCHEMA_VERSION)})

    @property
    def column_names(self) -> list[str]:
        return [f.name for f in self.columns]

    def field(self, name: str) -> pa.Field:
        return self.schema.field(name)


def _table(name, description, columns, key, entity_key=None, partition_time="extracted_at", newest_first=()) -> Table:
    return Table(name, description, tuple(COMMON + columns), tuple(key), tuple(entity_key or key), partition_time,
                 tuple(newest_first))


ORDERS = _table(
    "orders",
    "One row per order snapshot; a new snapshot only when the order changed.",
    [
        col("order_id", pa.string(), "Provider's order number, as text", False),
        col("status", pa.string(), "Canonical parcel status the order implies while it has no tracking data"),
        col("status_raw", pa.string(), "Order status exactly as the provider sent it"),
        col("created_at", UTC, "When the order was placed (UTC)"),
        col("updated_at", UTC, "Provider's last-modified time of the order (UTC)"),
        col("paid_at", UTC, "When payment cleared (UTC)"),
        col("ship_by_at", UTC, "Deadline for handing the order to the carrier (UTC)"),
        col("currency", pa.string(), "ISO 4217 currency of the money columns"),
        col("total_amount", MONEY, "Order total the buyer paid, in currency"),
        col("shipping_fee", MONEY, "Shipping fee charged, in currency"),
        col("destination_country", pa.string(), "ISO 3166-1 alpha-2 country the order ships to"),
        col("buyer_ref", pa.string(), "Buyer identifier, hashed or dropped per the source's pii setting"),
        col("recipient_name", pa.string(), "Recipient name, hashed or dropped per the source's pii setting"),
        col("recipient_phone", pa.string(), "Recipient phone, hashed or dropped per the source's pii setting"),
        col("recipient_address", pa.string(), "Recipient full address, hashed or dropped per the source's pii setting"),
        col("item_count", pa.int32(), "Number of order lines"),
        col("extras", pa.string(), "JSON object of provider fields with no canonical column"),
        col("record_hash", pa.string(), "Hash of the snapshot's content; equal hashes are not stored twice", False),
    ],
    key=("provider", "account_id", "order_id", "record_hash"),
    entity_key=("provider", "account_id", "order_id"),
    newest_first=("updated_at DESC NULLS LAST",),
    partition_time="created_at",
)

ORDER_ITEMS = _table(
    "order_items",
    "One row per line of an order snapshot.",
    [
        col("order_id", pa.string(), "Order the line belongs to", False),
        col("line_id", pa.string(), "Stable key of the line within its order", False),
        col("item_id", pa.string(), "Provider's product id"),
        col("variation_id", pa.string(), "Provider's variation / model / SKU id"),
        col("sku", pa.string(), "Seller SKU"),
        col("title", pa.string(), "Product title as sold"),
        col("quantity", pa.int32(), "Units ordered"),
        col("unit_price", MONEY, "Price of one unit before discounts, in currency"),
        col("discounted_price", MONEY, "Price of one unit after discounts, in currency"),
        col("currency", pa.string(), "ISO 4217 currency of the money columns"),
        col("extras", pa.string(), "JSON object of provider fields with no canonical column"),
        col("record_hash", pa.string(), "Hash of the line's content; equal hashes are not stored twice", False),
    ],
    key=("provider", "account_id", "order_id", "line_id", "record_hash"),
    entity_key=("provider", "account_id", "order_id", "line_id"),
)

SHIPMENTS = _table(
    "shipments",
    "One row per parcel snapshot (tracking number or package); a new snapshot only when it changed.",
    [
        col("shipment_id", pa.string(), "Tracking number, or the provider's package id until one exists", False),
        col("tracking_number", pa.string(), "Carrier tracking number"),
        col("order_id", pa.string(), "Order the parcel belongs to, where known"),
        col("carrier_code", pa.string(), "Carrier moving the parcel (usps, sf_express, ...)"),
        col("service", pa.string(), "Carrier service or provider's shipping channel label"),
        col("status", pa.string(), "Canonical tracking status", False),
        col("status_raw", pa.string(), "Status code exactly as the provider sent it"),
        col("is_final", pa.bool_(), "True once the parcel reached an end state; final parcels are no longer polled", False),
        col("origin_country", pa.string(), "ISO 3166-1 alpha-2 origin country"),
        col("destination_country", pa.string(), "ISO 3166-1 alpha-2 destination country"),
        col("created_at", UTC, "When the shipment or label was created (UTC)"),
        col("shipped_at", UTC, "When the parcel was handed to the carrier (UTC)"),
        col("estimated_delivery_at", UTC, "Carrier's estimated delivery (UTC)"),
        col("delivered_at", UTC, "When the parcel was delivered (UTC)"),
        col("last_event_at", UTC, "Time of the newest tracking event (UTC)"),
        col("tracking_url", pa.string(), "Public tracking page"),
        col("extras", pa.string(), "JSON object of provider fields with no canonical column"),
        col("record_hash", pa.string(), "Hash of the snapshot's content; equal hashes are not stored twice", False),
    ],
    key=("provider", "account_id", "shipment_id", "record_hash"),
    entity_key=("provider", "account_id", "shipment_id"),
    # Scans only accumulate, and a parcel that ended stays ended.
    newest_first=("last_event_at DESC NULLS LAST", "is_final DESC NULLS LAST"),
)

TRACKING_EVENTS = _table(
    "tracking_events",
    "One row per carrier scan, stored once per provider (account_id: the account that loaded it first); event_id makes a rerun add nothing.",
    [
        col("event_id", pa.string(), "Stable hash of provider, tracking number (else shipment_id), UTC time, code and text "
            "(a mapping may give its own: Shopee's return legs hash the leg)", False),
        col("shipment_id", pa.string(), "Shipment the scan belongs to", False),
        col("tracking_number", pa.string(), "Carrier tracking number"),
        col("carrier_code", pa.string(), "Carrier that made the scan"),
        col("occurred_at", UTC, "When the scan happened (UTC)", False),
        col("occurred_at_local", pa.string(), "The scan's local time exactly as the provider sent it"),
        col("status", pa.string(), "Canonical tracking status of the scan", False),
        col("status_raw", pa.string(), "Scan code exactly as the provider sent it"),
        col("description", pa.string(), "Scan text as the provider sent it"),
        col("city", pa.string(), "City or locality of the scan"),
        col("state", pa.string(), "State or province of the scan"),
        col("postal_code", pa.string(), "Postal code of the scan"),
        col("country", pa.string(), "ISO 3166-1 alpha-2 country of the scan"),
        col("latitude", pa.float64(), "Latitude of the scan"),
        col("longitude", pa.float64(), "Longitude of the scan"),
        col("extras", pa.string(), "JSON object of provider fields with no canonical column"),
    ],
    key=("event_id",),
    partition_time="occurred_at",
)

REJECTS = _table(
    "rejects",
    "One row per record that failed validation, with its reason and the record as received.",
    [
        col("table_name", pa.string(), "Canonical table the record was meant for", False),
        col("reason", pa.string(), "Why the record was rejected", False),
        col("record", pa.string(), "The mapped record as JSON, secrets masked", False),
    ],
    key=("run_id", "provider", "account_id", "table_name", "reason", "record"),
)

TABLES: dict[str, Table] = {t.name: t for t in (ORDERS, ORDER_ITEMS, SHIPMENTS, TRACKING_EVENTS, REJECTS)}
DATA_TABLES = tuple(name for name in TABLES if name != "rejects")
