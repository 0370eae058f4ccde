#!/usr/bin/env bash
# Seeds the fuzz corpus with the SQL of every fixture case.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/rewrite
python3 - <<'PY'
import glob, hashlib, yaml
for f in glob.glob('../tests/cases/**/*.yaml', recursive=True):
    sql = (yaml.safe_load(open(f)) or {}).get('sql')
    if isinstance(sql, str):
        open('corpus/rewrite/' + hashlib.sha1(sql.encode()).hexdigest(), 'w').write(sql)
# Multibyte identifiers and statements that write, lock or change the
# session (all must be refused or sandboxed).
for sql in ['SELECT * FROM "größe"', 'SELECT "名前" FROM orders AS "注文"',
            'WITH "ördérs" AS (SELECT * FROM orders) SELECT * FROM "ördérs"',
            'SELECT * FROM orders WHERE status = \'größe ☃\'',
            'INSERT INTO orders VALUES (1)', 'UPDATE orders SET total = 0',
            'DELETE FROM orders', 'SET search_path = audit', 'COPY orders TO STDOUT',
            'CALL refresh()', 'SELECT * INTO loot FROM orders',
            'SELECT * FROM orders FOR UPDATE',
            'WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d']:
    open('corpus/rewrite/' + hashlib.sha1(sql.encode()).hexdigest(), 'w').write(sql)
PY
ls corpus/rewrite | wc -l
