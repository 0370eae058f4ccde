-- Fixture of departments.test.yaml: the HR schema of policies/departments.yaml
-- (schema `hr`, an attached in-memory database).
ATTACH DATABASE ':memory:' AS hr;
CREATE TABLE hr.employees (id INTEGER PRIMARY KEY, name TEXT, department TEXT, salary NUMERIC, manager_id INTEGER);
INSERT INTO hr.employees VALUES
  (1, 'Ada', 'sales', 5000, NULL),
  (2, 'Bo', 'sales', 4000, 1),
  (3, 'Cy', 'support', 3500, NULL),
  (4, 'Di', 'finance', 6000, NULL);
CREATE TABLE hr.expenses (id INTEGER PRIMARY KEY, employee_id INTEGER, department TEXT, amount NUMERIC, spent_on TEXT, cost_centre TEXT);
INSERT INTO hr.expenses VALUES
  (100, 1, 'sales', 120, '2024-05-01', 'CC-1'),
  (101, 3, 'support', 80, '2024-05-02', 'CC-2'),
  (102, 4, 'finance', 300, '2024-05-03', 'CC-9'),
  (103, 2, 'Sales', 50, '2024-05-04', 'CC-1');
CREATE TABLE hr.departments (name TEXT PRIMARY KEY, budget NUMERIC);
INSERT INTO hr.departments VALUES ('sales', 10000), ('support', 5000), ('finance', 20000);
