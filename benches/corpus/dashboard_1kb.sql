WITH recent AS (
    SELECT o.account_id, o.product_id, o.total, o.status
    FROM orders o
    WHERE o.status IN ('paid', 'shipped') AND o.total > 10
), per_account AS (
    SELECT r.account_id, count(*) AS n, sum(r.total) AS revenue, max(r.total) AS biggest
    FROM recent r
    GROUP BY r.account_id
)
SELECT a.id, a.plan, pa.n, pa.revenue, pa.biggest,
       (SELECT count(*) FROM events e WHERE e.account_id = a.id AND e.kind = 'login') AS logins,
       p.category,
       rank() OVER (PARTITION BY a.plan ORDER BY pa.revenue DESC) AS plan_rank
FROM accounts a
JOIN per_account pa ON pa.account_id = a.id
LEFT JOIN recent r2 ON r2.account_id = a.id
LEFT JOIN products p ON p.id = r2.product_id
WHERE a.created_at >= '2024-01-01' AND a.plan <> 'trial'
  AND EXISTS (SELECT 1 FROM orders o2 WHERE o2.account_id = a.id AND o2.total > 100)
GROUP BY a.id, a.plan, pa.n, pa.revenue, pa.biggest, p.category
HAVING sum(pa.n) > 1
ORDER BY pa.revenue DESC, a.id
LIMIT 100
