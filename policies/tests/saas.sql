-- Fixture of saas.test.yaml: a few rows of two tenants (42 and 7) in the
-- tables of policies/saas.yaml. The policy's schema `public` is an attached
-- in-memory database, so the rewritten `public.orders` resolves.
ATTACH DATABASE ':memory:' AS public;
CREATE TABLE public.accounts (id INTEGER PRIMARY KEY, email TEXT, plan TEXT, tenant_id INTEGER, created_at TEXT);
INSERT INTO public.accounts VALUES
  (1, 'ann@acme.test', 'pro', 42, '2024-01-05 10:00:00'),
  (2, 'ben@acme.test', 'free', 42, '2024-02-01 09:00:00'),
  (3, 'cyd@beta.test', 'pro', 7, '2024-03-01 12:00:00');
CREATE TABLE public.orders (id INTEGER PRIMARY KEY, account_id INTEGER, product_id INTEGER, total NUMERIC, tenant_id INTEGER, status TEXT);
INSERT INTO public.orders VALUES
  (10, 1, 100, 120.5, 42, 'paid'),
  (11, 2, 101, 30, 42, 'open'),
  (12, 3, 100, 99.99, 7, 'paid'),
  (13, 3, 101, 250, 7, 'paid');
CREATE TABLE public.products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price NUMERIC);
INSERT INTO public.products VALUES (100, 'Widget', 'tools', 20), (101, 'Gadget', 'toys', 15);
CREATE TABLE public.events (id INTEGER PRIMARY KEY, account_id INTEGER, kind TEXT, tenant_id INTEGER, region TEXT, at TEXT);
INSERT INTO public.events VALUES
  (1000, 1, 'login', 42, 'eu', '2024-04-01 08:00:00'),
  (1001, 2, 'login', 42, 'us', '2024-04-02 08:00:00'),
  (1002, 3, 'login', 7, 'us', '2024-04-03 08:00:00');
