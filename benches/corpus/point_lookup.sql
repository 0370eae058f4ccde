SELECT id, total, status FROM orders WHERE id = 42
