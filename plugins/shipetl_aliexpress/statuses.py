"""AliExpress status vocabularies: node text keywords, order logistics statuses, order statuses (providers.md 2.7, 6.3).

Tracking nodes carry no status code, only text, so a parcel's status comes from a keyword table: the
node's ``tracking_detail_desc`` is tried against every rule in order, then its ``tracking_name`` (often a
generic "Delivery update"); the first rule with a keyword contained in the text (case-insensitive) wins.
A node no rule matches gets the source's ``unmatched_node_status`` option (default ``in_transit``, the
GUESS of providers.md 2.7: "other dated nodes"); set it to null to leave such nodes ``unknown`` and have
them counted in the run summary. The table is data: :func:`node_status_sql` turns it into one SQL CASE.
Chinese keywords sit beside the English ones because ``language=en_US`` still returns Chinese text for
many domestic legs.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipetl import sql_literal


@dataclass(frozen=True)
class NodeRule:
    """Keywords that give a node a canonical status; ``final`` ends polling of the parcel."""

    status: str
    final: bool
    keywords: tuple[str, ...]


# Order matters: first match wins ("returned to sender" before "return", "failed delivery" before "delivered").
NODE_RULES: tuple[NodeRule, ...] = (
    NodeRule("out_for_delivery", False, ("out for delivery", "delivering", "派送中", "正在派送", "派件中")),
    NodeRule("failed_attempt", False, ("attempt", "failed delivery", "unsuccessful", "投递失败", "派送失败", "未妥投")),
    NodeRule("available_for_pickup", False, ("pick up at", "pickup point", "ready for collection", "待取件", "待自提",
                                             "已到达自提点")),
    NodeRule("returned", True, ("returned to sender", "已退回寄件人", "退回卖家")),
    NodeRule("exception", False, ("return", "退回", "退件")),
    NodeRule("exception", True, ("lost", "damaged", "destroyed", "丢失", "破损", "销毁")),
    NodeRule("exception", False, ("not delivered", "undeliverable", "held", "exception", "异常", "扣留", "扣关")),
    NodeRule("delivered", True, ("delivered", "已签收", "妥投", "签收成功")),
    NodeRule("info_received", False, ("order received", "information received", "awaiting", "created", "preparation",
                                      "prepared", "订单已创建", "已下单", "包裹准备", "等待揽收")),
)

# Order-level logistics_status: the parcel status an order implies while it has no tracking nodes.
LOGISTICS_STATUSES: dict[str, tuple[str, bool]] = {
    "DEFAULT": ("pending", False),
    "NO_LOGISTICS": ("pending", False),
    "WAIT_SELLER_SEND_GOODS": ("pending", False),
    "SELLER_SEND_PART_GOODS": ("in_transit", False),
    "SELLER_SEND_GOODS": ("in_transit", False),
    "BUYER_ACCEPT_GOODS": ("delivered", True),
}

# order_status, used when logistics_status is absent. FINISH also covers closed orders (UNCONFIRMED), so
# it implies no parcel status; IN_CANCEL is a cancellation in progress, not an end state.
ORDER_STATUSES: dict[str, tuple[str, bool]] = {
    **{s: ("pending", False) for s in ("PLACE_ORDER_SUCCESS", "PAYMENT_PROCESSING", "WAIT_SELLER_EXAMINE_MONEY",
                                       "RISK_CONTROL", "RISK_CONTROL_HOLD", "WAIT_GROUP", "WAIT_COMPLETE_ADDRESS",
                                       "WAIT_SELLER_SEND_GOODS")},
    "SELLER_PART_SEND_GOODS": ("in_transit", False),
    "WAIT_BUYER_ACCEPT_GOODS": ("in_transit", False),
    "IN_CANCEL": ("exception", False),
}
# Order statuses that change the ship-by obligation (Provider.order_states, read by the analytics marts).
ORDER_STATES = {"IN_CANCEL": "cancel_requested", "PLACE_ORDER_SUCCESS": "awaiting_payment",
                "PAYMENT_PROCESSING": "awaiting_payment"}
# The order status after which an order is not fetched again (unless one of its parcels is still open).
FINISHED_ORDER_STATUS = "FINISH"

LOGISTICS_NAMESPACE = "aliexpress.logistics"
ORDER_NAMESPACE = "aliexpress.order"


def _matching(text_sql: str, pick) -> str:
    """A CASE giving ``pick(rule)`` for the first rule with a keyword in ``text_sql``, else NULL."""
    lowered = f"lower({text_sql})"
    whens = " ".join(
        f"WHEN {' OR '.join(f'contains({lowered}, {sql_literal(k.lower())})' for k in rule.keywords)} THEN {pick(rule)}"
        for rule in NODE_RULES
    )
    return f"(CASE {whens} END)"


def node_status_sql(desc_sql: str, name_sql: str, fallback_sql: str) -> str:
    """SQL for a node's canonical status: description first, then name, then ``fallback_sql`` (may be NULL)."""
    pick = lambda r: sql_literal(r.status)  # noqa: E731
    return f"coalesce({_matching(desc_sql, pick)}, {_matching(name_sql, pick)}, {fallback_sql})"


def node_final_sql(desc_sql: str, name_sql: str) -> str:
    """SQL for whether a node ends the parcel's story (the matched rule's ``final``; false when none matched)."""
    pick = lambda r: "true" if r.final else "false"  # noqa: E731
    return f"coalesce({_matching(desc_sql, pick)}, {_matching(name_sql, pick)}, false)"
