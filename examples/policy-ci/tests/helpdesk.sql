-- Fixture of helpdesk.test.yaml: two customers and their tickets.
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT);
INSERT INTO customers VALUES (1, 'Ana', 'ana@example.test'), (2, 'Ben', 'ben@example.test');
CREATE TABLE tickets (id INTEGER PRIMARY KEY, customer_id INTEGER, subject TEXT, status TEXT);
INSERT INTO tickets VALUES
  (10, 1, 'Cannot log in', 'open'),
  (11, 1, 'Invoice copy', 'closed'),
  (20, 2, 'Refund', 'open');
