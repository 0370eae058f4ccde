-- Fixture of rules.test.yaml: a few rows in the tables of
-- policies/rules.yaml. The policy's schema `public` is an attached
-- in-memory database, so the rewritten `public.document` resolves. The
-- policy's rules are written for PostgreSQL, so its `rows` cases are
-- rewritten for PostgreSQL (`dialect: postgres`; a rule is refused in
-- another dialect) and use only SQL that SQLite reads alike.
ATTACH DATABASE ':memory:' AS public;
CREATE TABLE public.category (cid INTEGER PRIMARY KEY, cname TEXT);
INSERT INTO public.category VALUES (11, 'novel'), (22, 'science'), (33, 'archive'), (44, 'secret');
CREATE TABLE public.document (did INTEGER PRIMARY KEY, cid INTEGER, dlevel INTEGER, dauthor TEXT, dtitle TEXT, status TEXT);
INSERT INTO public.document VALUES
  (1, 11, 0, 'alan', 'a1', 'draft'),
  (2, 22, 1, 'alan', 'a2', 'public'),
  (3, 44, 0, 'alan', 'a3', 'draft'),
  (4, 33, 2, 'rita', 'r1', 'public'),
  (5, 11, 2, 'rita', 'r2', 'public'),
  (6, 22, 3, 'ross', 'x1', 'public'),
  (7, 33, 1, 'ross', 'x2', 'internal'),
  (8, 44, 1, 'ross', 'x3', 'public');
CREATE TABLE public.customers (id INTEGER PRIMARY KEY, name TEXT, region TEXT, email TEXT, phone TEXT);
INSERT INTO public.customers VALUES
  (1, 'Acme', 'eu', 'acme@x.test', '+1'),
  (2, 'Bolt', 'us', 'bolt@x.test', '+2'),
  (3, 'Cogs', 'eu', NULL, '+3');
CREATE TABLE public.audit_log (id INTEGER PRIMARY KEY, actor TEXT, action TEXT);
INSERT INTO public.audit_log VALUES (1, 'rita', 'login');
