-- Fixture of routed.test.yaml: the invoices every tenant database holds
-- (schema `public`, an attached in-memory database).
ATTACH DATABASE ':memory:' AS public;
CREATE TABLE public.invoices (id INTEGER PRIMARY KEY, customer TEXT, amount NUMERIC, region TEXT);
INSERT INTO public.invoices VALUES (1, 'Road Runner', 10, 'west'), (2, 'Coyote', 99.5, 'east'), (3, 'Acme', 7, 'west');
