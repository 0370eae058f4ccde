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
PY
ls corpus/rewrite | wc -l
