-- Fixture of marketplace.test.yaml: the `shop` database of
-- policies/marketplace.yaml (schema `public`, an attached in-memory database).
ATTACH DATABASE ':memory:' AS public;
CREATE TABLE public.listings (id INTEGER PRIMARY KEY, seller_id INTEGER, title TEXT, price NUMERIC, region TEXT);
INSERT INTO public.listings VALUES
  (1, 11, 'Lamp', 40, 'north'),
  (2, 11, 'Desk', 200, 'south'),
  (3, 12, 'Chair', 90, 'east'),
  (4, 13, 'Rug', 60, 'west');
CREATE TABLE public.sales (id INTEGER PRIMARY KEY, listing_id INTEGER, seller_id INTEGER, amount NUMERIC, buyer_email TEXT, region TEXT, sold_at TEXT);
INSERT INTO public.sales VALUES
  (100, 1, 11, 40, 'x@buyer.test', 'north', '2024-01-10 00:00:00'),
  (101, 2, 11, 200, 'y@buyer.test', 'south', '2024-03-10 00:00:00'),
  (102, 3, 12, 90, 'z@buyer.test', 'east', '2024-03-11 00:00:00');
CREATE TABLE public.sellers (id INTEGER PRIMARY KEY, name TEXT, region TEXT, iban TEXT);
INSERT INTO public.sellers VALUES (11, 'Sam''s', 'north', 'DE00 1'), (12, 'Eve', 'east', 'DE00 2');
