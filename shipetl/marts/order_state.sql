-- analytics_order_state(provider, status_raw): what an order's own status (orders.status_raw, any case) says
-- about its ship-by obligation. Canonical orders.status is the parcel status an order implies, which cannot
-- tell an unpaid order from one ready to ship, nor a cancelled one from a returned one, so the raw words
-- decide, as each provider declares them (Provider.order_states; `shipetl plugins` lists the providers):
--
-- cancelled         no obligation any more
-- cancel_requested  the buyer asked to cancel; the seller has not answered
-- awaiting_payment  no obligation yet. paid_at is not the test: a cash-on-delivery order has none until
--                   delivery, yet must ship on time
-- NULL              any other status: the order is to be shipped by its ship-by date
--
-- The CASE below is made of the installed providers' words each time the macro is created (every commit).
CREATE OR REPLACE {temp}MACRO analytics_order_state(provider, status_raw) AS
    {words}
