-- analytics_order_state(status_raw): what an order's own status (orders.status_raw, any case) says about its
-- ship-by obligation. Canonical orders.status is the parcel status an order implies, which cannot tell an
-- unpaid order from one ready to ship, nor a cancelled one from a returned one, so the raw words decide:
--
-- cancelled         CANCELLED, CANCELED (Shopee, Fuuffy): no obligation any more
-- cancel_requested  IN_CANCEL (Shopee, AliExpress): the buyer asked to cancel; the seller has not answered
-- awaiting_payment  UNPAID (Shopee), PLACE_ORDER_SUCCESS, PAYMENT_PROCESSING (AliExpress): no obligation
--                   yet. paid_at is not the test: a cash-on-delivery order has none until delivery, yet
--                   must ship on time
-- NULL              any other status: the order is to be shipped by its ship-by date
CREATE OR REPLACE {temp}MACRO analytics_order_state(status_raw) AS
    CASE WHEN upper(trim(status_raw)) IN ('CANCELLED', 'CANCELED') THEN 'cancelled'
         WHEN upper(trim(status_raw)) IN ('IN_CANCEL') THEN 'cancel_requested'
         WHEN upper(trim(status_raw)) IN ('UNPAID', 'PLACE_ORDER_SUCCESS', 'PAYMENT_PROCESSING') THEN 'awaiting_payment'
    END
