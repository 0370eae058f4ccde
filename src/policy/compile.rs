//! Validation and compilation of a `RawPolicy` into a `Policy`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::locate::locate;
use super::model::*;
use super::question;
use super::*;
use crate::error::Location;
use crate::suggest::did_you_mean;
use crate::value::AttributeValue;

/// The one place a policy's YAML is parsed: streamed into the model by
/// `crate::yaml`, which refuses a repeated key in any mapping (a second
/// `groups.x` quietly replacing the first is how a policy leaks).
fn parse_yaml(src: &str, file: &str) -> Result<RawPolicy> {
    crate::yaml::from_str::<RawPolicy>(src).map_err(|e| {
        let (line, column) = e
            .location()
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        Error::PolicySyntax {
            location: Location {
                file: file.to_string(),
                line,
                column,
                key: String::new(),
            },
            message: crate::suggest::serde_message(&e.message()),
        }
    })
}

/// Parses a YAML document (a query-builder question) into JSON, refusing
/// repeated keys as the policy loader does. The caller has checked size and
/// nesting (`crate::input::check_shape`).
pub(crate) fn parse_yaml_document(src: &str) -> std::result::Result<serde_json::Value, String> {
    crate::yaml::from_str::<serde_json::Value>(src).map_err(|e| e.to_string())
}

struct Ctx<'a> {
    src: &'a str,
    file: &'a str,
    /// The values read from the environment while compiling (hash keys by
    /// `key_env`), as (variable, value): part of the policy's digest.
    env: std::cell::RefCell<Vec<(String, String)>>,
}

impl Ctx<'_> {
    fn err(&self, path: &[&str], message: impl Into<String>) -> Error {
        let (line, column) = locate(self.src, path);
        Error::PolicyInvalid {
            location: Location {
                file: self.file.to_string(),
                line,
                column,
                key: path.join("."),
            },
            message: message.into(),
        }
    }
}

pub(super) fn compile(src: &str, file: &str) -> Result<Policy> {
    // One leading byte-order mark is an editor's artefact, not YAML.
    let src = crate::input::strip_bom(src);
    let mut raw = parse_yaml(src, file)?;
    let cx = Ctx {
        src,
        file,
        env: std::cell::RefCell::new(Vec::new()),
    };
    if raw.version != 1 {
        return Err(cx.err(
            &["version"],
            format!(
                "unsupported policy version {} (this sqlsandbox reads version 1)",
                raw.version
            ),
        ));
    }

    let policy_denied = on_denied(
        &cx,
        &["on_denied"],
        raw.on_denied.as_deref(),
        OnDenied::Error,
    )?;
    let policy_combine = combine(&cx, &["combine"], raw.combine.as_deref(), Combine::Error)?;
    let mut databases = BTreeMap::new();
    for (name, db) in &raw.databases {
        databases.insert(
            name.clone(),
            compile_database(&cx, name, db, policy_denied, policy_combine)?,
        );
    }
    // Routing destinations that name a policy database must share the
    // router's schema: a sandbox compiled against one is applied to both.
    for (name, db) in &databases {
        let Some(routing) = &db.routing else { continue };
        for (slug, target) in &routing.destinations {
            let Some(target) = target else { continue };
            let path = [
                "databases",
                name.as_str(),
                "routing",
                "destinations",
                slug.as_str(),
            ];
            let other = databases.get(target).ok_or_else(|| {
                cx.err(
                    &path,
                    format!("destination `{slug}` names unknown database `{target}`"),
                )
            })?;
            let same = other.dialect == db.dialect
                && other.tables.len() == db.tables.len()
                && db.tables.iter().all(|(k, t)| {
                    other.tables.get(k).is_some_and(|o| {
                        o.columns.len() == t.columns.len()
                            && t.columns
                                .iter()
                                .all(|c| o.column(&c.key).is_some_and(|oc| oc.ty == c.ty))
                    })
                });
            if !same {
                return Err(cx.err(
                    &path,
                    format!("destination `{slug}` (database `{target}`) does not declare the same dialect, tables and columns as router `{name}`"),
                ));
            }
        }
    }

    let mut collections = BTreeMap::new();
    collections.insert(
        ROOT_COLLECTION.to_string(),
        Collection {
            name: ROOT_COLLECTION.to_string(),
            parent: None,
        },
    );
    for (name, c) in &raw.collections {
        if name == ROOT_COLLECTION {
            return Err(cx.err(
                &["collections", name],
                format!("`{ROOT_COLLECTION}` is the root collection (Metabase's \"Our analytics\"): it always exists and is not declared; grant it in a group's `collections:` and put questions in it with `collection: {ROOT_COLLECTION}` or no collection"),
            ));
        }
        if c.parent.as_deref() == Some(ROOT_COLLECTION) {
            return Err(cx.err(
                &["collections", name, "parent"],
                format!("a collection without `parent:` is already in the root collection; `parent: {ROOT_COLLECTION}` is refused because the root's permissions do not flow down to top-level collections"),
            ));
        }
        if let Some(parent) = &c.parent {
            if !raw.collections.contains_key(parent) {
                return Err(cx.err(
                    &["collections", name, "parent"],
                    format!("unknown parent collection `{parent}`"),
                ));
            }
        }
        collections.insert(
            name.clone(),
            Collection {
                name: name.clone(),
                parent: c.parent.clone(),
            },
        );
    }
    for name in collections.keys() {
        let mut seen = HashSet::new();
        let mut cur = Some(name.as_str());
        while let Some(c) = cur {
            if !seen.insert(c) {
                return Err(cx.err(
                    &["collections", name, "parent"],
                    format!("collection `{name}` is its own ancestor"),
                ));
            }
            cur = collections.get(c).and_then(|c| c.parent.as_deref());
        }
    }

    let mut questions = BTreeMap::new();
    for (name, q) in &raw.questions {
        let path = ["questions", name.as_str()];
        let db = databases.get(&q.database).ok_or_else(|| {
            cx.err(
                &["questions", name, "database"],
                format!("question `{name}` names unknown database `{}`", q.database),
            )
        })?;
        let collection = q.collection.as_deref().unwrap_or(ROOT_COLLECTION);
        if !collections.contains_key(collection) {
            return Err(cx.err(
                &["questions", name, "collection"],
                format!(
                    "question `{name}` names unknown collection `{collection}`{}",
                    did_you_mean(collection, collections.keys().map(String::as_str))
                ),
            ));
        }
        let (text, variables) = question::substitute_variables(&q.sql).map_err(|m| {
            cx.err(
                &["questions", name, "sql"],
                format!("question `{name}`: {m}"),
            )
        })?;
        let mut query = question::parse(&text, db.dialect).map_err(|m| {
            cx.err(
                &["questions", name, "sql"],
                format!("question `{name}` does not parse: {m}"),
            )
        })?;
        question::qualify_tables(&mut query, db).map_err(|m| {
            cx.err(
                &["questions", name, "sql"],
                format!("question `{name}`: {m}"),
            )
        })?;
        let found = question::markers_in(&query);
        if let Some(v) = variables.iter().find(|v| !found.contains(v)) {
            return Err(cx.err(
                &path,
                format!("question `{name}`: variable `{{{{{v}}}}}` is not in an expression position (inside a string or comment?)"),
            ));
        }
        let mut columns = question::output_columns(&query, db);
        if !q.columns.is_empty() {
            let cols = columns.as_mut().map_err(|m| {
                cx.err(
                    &["questions", name, "columns"],
                    format!("question `{name}`: {m}"),
                )
            })?;
            for (c, ty) in &q.columns {
                let path = ["questions", name.as_str(), "columns", c.as_str()];
                let ty = ColumnType::parse(ty).ok_or_else(|| {
                    cx.err(
                        &path,
                        format!("question `{name}`: column `{c}` has unknown type `{ty}`"),
                    )
                })?;
                let key = db.dialect.normalize_policy_name(c);
                let slot = cols.iter_mut().find(|(n, _)| *n == key).ok_or_else(|| {
                    cx.err(
                        &path,
                        format!(
                            "question `{name}` declares column `{c}`, which it does not return"
                        ),
                    )
                })?;
                if let Some(inferred) = slot.1.filter(|i| !i.compatible(ty)) {
                    return Err(cx.err(
                        &path,
                        format!("question `{name}` returns `{c}` as {inferred}, not {ty}"),
                    ));
                }
                slot.1 = Some(ty);
            }
        }
        let columns = columns.ok();
        let (inferred, untyped) = variable_types(&cx, name, q, &variables, &query, db)?;
        questions.insert(
            name.clone(),
            Arc::new(Question {
                name: name.clone(),
                database: q.database.clone(),
                collection: collection.to_string(),
                sql: q.sql.clone(),
                query,
                variables,
                columns,
                inferred,
                untyped,
            }),
        );
    }

    let mut attribute_types: HashMap<String, AttributeType> = HashMap::new();
    let declared_names: Option<Vec<String>> = match &raw.attributes {
        None => None,
        Some(RawAttributes::Names(names)) => Some(names.clone()),
        Some(RawAttributes::Typed(map)) => {
            for (a, t) in map {
                let path = ["attributes", a.as_str()];
                let ty = match t {
                    RawAttrType::Name(n) => AttributeType::parse(n),
                    RawAttrType::List(items) => match items.as_slice() {
                        [one] => AttributeType::parse(one)
                            .filter(|t| !t.list)
                            .map(|t| AttributeType { list: true, ..t }),
                        _ => None,
                    },
                };
                let ty = ty.ok_or_else(|| {
                    cx.err(
                        &path,
                        format!("attribute `{a}` has an unknown type (expected integer, decimal, text, boolean, date, timestamp or uuid, or a list of one: `[text]`, `text[]`, `list<text>`)"),
                    )
                })?;
                attribute_types.insert(a.clone(), ty);
            }
            Some(map.keys().cloned().collect())
        }
    };
    let declared: Option<HashSet<String>> =
        declared_names.as_ref().map(|a| a.iter().cloned().collect());
    let mut groups = BTreeMap::new();
    for builtin in [ALL_USERS, ADMINISTRATORS] {
        groups.insert(
            builtin.to_string(),
            Group {
                name: builtin.to_string(),
                ..Group::default()
            },
        );
    }
    for (name, g) in &raw.groups {
        if name == ADMINISTRATORS && (!g.data.is_empty() || !g.native.is_empty()) {
            return Err(cx.err(
                &["groups", name],
                "`administrators` bypass data permissions; do not grant them data access",
            ));
        }
        let group = compile_group(
            &cx,
            name,
            g,
            &databases,
            &questions,
            &collections,
            declared.as_ref(),
            &attribute_types,
        )?;
        groups.insert(name.clone(), group);
    }

    type_by_sandboxes(&cx, &mut questions, &groups)?;
    rule_cycles(&cx, &databases, &groups)?;

    let raw_users = std::mem::take(&mut raw.users);
    let mut users = HashMap::with_capacity_and_hasher(
        raw_users.0.len(),
        foldhash::fast::RandomState::default(),
    );
    for (name, u) in raw_users.0 {
        for g in &u.groups {
            if !groups.contains_key(g) {
                return Err(cx.err(
                    &["users", &name, "groups"],
                    format!(
                        "user `{name}` is in unknown group `{g}`{}",
                        did_you_mean(g, groups.keys().map(String::as_str))
                    ),
                ));
            }
        }
        // Sorted by key, as `SmallMap` is; collected in place.
        let attributes = u.attributes.0.into_iter().map(|(k, v)| {
            if let Some(d) = &declared {
                if !d.contains(&k) {
                    return Err(cx.err(
                        &["users", &name, "attributes", &k],
                        format!(
                            "user `{name}` has unknown attribute `{k}` (declared attributes: {}){}",
                            sorted(d),
                            did_you_mean(&k, d.iter().map(String::as_str))
                        ),
                    ));
                }
            }
            let RawAttr::Value(value) = v else {
                return Err(cx.err(
                    &["users", &name, "attributes", &k],
                    format!("attribute `{k}` of user `{name}` must be a string, a number, a boolean or a list of them"),
                ));
            };
            if let Some(ty) = attribute_types.get(&k) {
                check_attribute_type(&value, *ty, &k).map_err(|m| {
                    cx.err(
                        &["users", &name, "attributes", &k],
                        format!("user `{name}`: {m}"),
                    )
                })?;
            }
            Ok((k, value))
        });
        let attributes = attributes.collect::<Result<Vec<_>>>()?;
        match users.entry(name) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let name = e.key();
                return Err(cx.err(&["users", name], format!("duplicate user `{name}`")));
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(UserDef {
                    groups: u.groups,
                    attributes,
                });
            }
        }
    }

    let mut api_keys: Vec<ApiKey> = Vec::new();
    for (name, k) in &raw.api_keys {
        let path = ["api_keys", name.as_str()];
        if !groups.contains_key(&k.group) {
            return Err(cx.err(
                &path,
                format!("API key `{name}` names unknown group `{}`", k.group),
            ));
        }
        let hex = |field: &str, value: &str| {
            let hash = value.to_ascii_lowercase();
            if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(hash)
            } else {
                Err(cx.err(
                    &[path[0], path[1], field],
                    format!(
                        "API key `{name}`: `{field}` must be 64 hex digits (the SHA-256 of the secret)"
                    ),
                ))
            }
        };
        let hash = hex("sha256", &k.sha256)?;
        let previous = k
            .previous_sha256
            .as_deref()
            .map(|p| hex("previous_sha256", p))
            .transpose()?;
        if previous.as_ref() == Some(&hash) {
            return Err(cx.err(
                &[path[0], path[1], "previous_sha256"],
                format!("API key `{name}`: `previous_sha256` is the same as `sha256` (a rotation needs a new secret)"),
            ));
        }
        for h in std::iter::once(&hash).chain(previous.iter()) {
            if let Some(other) = api_keys.iter().find(|o| o.accepts(h)) {
                return Err(cx.err(
                    &path,
                    format!(
                        "API key `{name}` has the same secret as API key `{}`",
                        other.name
                    ),
                ));
            }
        }
        let mut attributes = BTreeMap::new();
        for (a, v) in &k.attributes {
            if let Some(d) = &declared {
                if !d.contains(a) {
                    return Err(cx.err(&path, format!("API key `{name}` has unknown attribute `{a}` (declared attributes: {})", sorted(d))));
                }
            }
            let value = AttributeValue::from_yaml(v).ok_or_else(|| {
                cx.err(&path, format!("attribute `{a}` of API key `{name}` must be a string, a number, a boolean or a list of them"))
            })?;
            if let Some(ty) = attribute_types.get(a) {
                check_attribute_type(&value, *ty, a)
                    .map_err(|m| cx.err(&path, format!("API key `{name}`: {m}")))?;
            }
            attributes.insert(a.clone(), value);
        }
        api_keys.push(ApiKey {
            name: name.clone(),
            sha256: hash,
            previous_sha256: previous,
            group: k.group.clone(),
            attributes,
        });
    }

    let writes = groups.values().any(|g| {
        g.data.values().any(|d| match d {
            DbGrant::Schemas(s) => s.values().any(|sg| match sg {
                SchemaGrant::Tables(t) => t
                    .values()
                    .any(|tg| matches!(tg, TableGrant::Sandbox(sb) if !sb.writes.is_empty())),
                _ => false,
            }),
            _ => false,
        })
    });
    let functions = match &raw.functions {
        None => FunctionPolicy::default(),
        Some(f) => compile_functions(&cx, f)?,
    };
    rule_functions(&cx, &databases, &groups, &functions)?;

    let digest = policy_digest(src, &cx.env.borrow());
    Ok(Policy {
        digest,
        file: file.to_string(),
        databases,
        questions,
        collections,
        groups,
        users,
        api_keys,
        declared_attributes: declared_names,
        attribute_types,
        writes,
        functions,
    })
}

/// Validates `functions:`: every name is a (possibly dotted) SQL name, and
/// no `allow` entry is always denied (the built-in deny list wins, and a
/// policy that tried to lift it is refused rather than half applied).
fn compile_functions(cx: &Ctx, f: &RawFunctions) -> Result<FunctionPolicy> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
            })
    };
    let names = |key: &str, list: &[String]| -> Result<HashSet<String>> {
        list.iter()
            .map(|n| {
                let lower = n.to_lowercase();
                if !plain(&lower) {
                    return Err(cx.err(
                        &["functions", key],
                        format!("`{n}` is not a function name (expected `name` or `schema.name`)"),
                    ));
                }
                Ok(lower)
            })
            .collect()
    };
    let allow = names("allow", &f.allow)?;
    let deny = names("deny", &f.deny)?;
    for name in &f.allow {
        let lower = name.to_lowercase();
        let short = lower.rsplit('.').next().unwrap_or_default();
        if let Some(why) = crate::functions::denied_reason(short) {
            return Err(cx.err(
                &["functions", "allow"],
                format!("function `{name}` cannot be allowed: it {why}, and it is always denied"),
            ));
        }
    }
    let mut variables = HashSet::new();
    for v in &f.variables {
        let lower = v.to_ascii_lowercase();
        // `@@name` is the system variable `name`; `@name` a user variable.
        let lower = lower.strip_prefix("@@").unwrap_or(&lower).to_string();
        let word = lower.strip_prefix('@').unwrap_or(&lower);
        if word.is_empty()
            || !word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        {
            return Err(cx.err(
                &["functions", "variables"],
                format!("`{v}` is not a variable name (expected `name` for `@@name`, or `@name`)"),
            ));
        }
        variables.insert(lower);
    }
    Ok(FunctionPolicy {
        allow,
        deny,
        variables,
    })
}

/// What an untyped variable's position is, for errors.
fn untyped_use(var: &str) -> String {
    format!("variable `{{{{{var}}}}}` is used where no compared column gives its type (a function argument, select item, LIMIT, CASE, arithmetic, or a comparison with an expression)")
}

/// The types of a question's variables (declared, else inferred from the
/// columns they are compared with) and the variables only a declaration
/// can type. Refuses a variable standing alone as a boolean predicate, one
/// compared with columns of incompatible types, and a declaration for a
/// variable the question does not have.
fn variable_types(
    cx: &Ctx,
    name: &str,
    raw: &RawQuestion,
    variables: &[String],
    query: &sqlparser::ast::Query,
    db: &Database,
) -> Result<(HashMap<String, ColumnType>, Vec<String>)> {
    let mut types = HashMap::new();
    for (v, ty) in &raw.variables {
        let path = ["questions", name, "variables", v.as_str()];
        if !variables.contains(v) {
            return Err(cx.err(
                &path,
                format!("question `{name}` declares a type for `{{{{{v}}}}}`, which is not one of its variables"),
            ));
        }
        let ty = ColumnType::parse(ty).ok_or_else(|| {
            cx.err(
                &path,
                format!("question `{name}`: variable `{{{{{v}}}}}` has unknown type `{ty}`"),
            )
        })?;
        types.insert(v.clone(), ty);
    }
    let mut untyped = Vec::new();
    let sql_path = ["questions", name, "sql"];
    for (v, u) in question::variable_uses(query, db) {
        if u.predicate > 0 {
            return Err(cx.err(
                &sql_path,
                format!("question `{name}`: variable `{{{{{v}}}}}` stands alone (or with constants only) as a boolean condition (WHERE, ON, HAVING, AND/OR/NOT operand, CASE WHEN); a value there is true or false for every row alike. Compare it with a column instead (`column = {{{{{v}}}}}`)"),
            ));
        }
        if let Some(&declared) = types.get(&v) {
            if let Some(other) = u.compared.iter().find(|t| !t.compatible(declared)) {
                return Err(cx.err(
                    &["questions", name, "variables", v.as_str()],
                    format!("question `{name}` declares variable `{{{{{v}}}}}` as {declared}, but compares it with a column that is {other}"),
                ));
            }
            continue;
        }
        if let Some(&first) = u.compared.first() {
            if let Some(other) = u.compared.iter().find(|t| !t.compatible(first)) {
                return Err(cx.err(
                    &sql_path,
                    format!("question `{name}`: variable `{{{{{v}}}}}` is compared with columns of different types ({first} and {other}); declare its type (`variables: {{{v}: …}}`)"),
                ));
            }
            types.insert(v.clone(), first);
        }
        if u.untyped > 0 {
            untyped.push(v);
        }
    }
    Ok((types, untyped))
}

/// Gives each variable only a declaration can type the type every sandbox
/// using the question declares for it (a saved question run by name binds
/// its variables with that type); a question used by no sandbox, or by
/// sandboxes declaring different types, is refused.
fn type_by_sandboxes(
    cx: &Ctx,
    questions: &mut BTreeMap<String, Arc<Question>>,
    groups: &BTreeMap<String, Group>,
) -> Result<()> {
    for (name, q) in questions.iter_mut() {
        if q.untyped.is_empty() {
            continue;
        }
        let mut found: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for g in groups.values() {
            for grant in g.data.values() {
                let DbGrant::Schemas(schemas) = grant else {
                    continue;
                };
                for sg in schemas.values() {
                    let SchemaGrant::Tables(tables) = sg else {
                        continue;
                    };
                    for tg in tables.values() {
                        let TableGrant::Sandbox(sb) = tg else {
                            continue;
                        };
                        let SandboxKind::Custom {
                            question,
                            parameters,
                        } = &sb.kind
                        else {
                            continue;
                        };
                        if question != name {
                            continue;
                        }
                        for p in parameters {
                            if let Some(ty) = p.ty.filter(|_| q.untyped.contains(&p.variable)) {
                                found
                                    .entry(p.variable.clone())
                                    .or_default()
                                    .insert(ty.to_string());
                            }
                        }
                    }
                }
            }
        }
        let path = ["questions", name.as_str(), "sql"];
        let mut types = Vec::new();
        for v in &q.untyped {
            let declared = found.remove(v).unwrap_or_default();
            let mut it = declared.iter();
            match (it.next(), it.next()) {
                (Some(ty), None) => types.push((
                    v.clone(),
                    ColumnType::parse(ty).ok_or_else(|| Error::Verification(format!("type `{ty}`")))?,
                )),
                (None, _) => {
                    return Err(cx.err(
                        &path,
                        format!("question `{name}`: {}; declare its type (`variables: {{{v}: …}}`)", untyped_use(v)),
                    ))
                }
                (Some(_), Some(_)) => {
                    return Err(cx.err(
                        &path,
                        format!("question `{name}`: sandboxes declare different types for variable `{{{{{v}}}}}` ({}); declare one on the question (`variables: {{{v}: …}}`)", declared.into_iter().collect::<Vec<_>>().join(", ")),
                    ))
                }
            }
        }
        let q = Arc::get_mut(q).ok_or_else(|| {
            Error::Verification(format!("question `{name}` is shared while loading"))
        })?;
        q.inferred.extend(types);
        q.untyped.clear();
    }
    Ok(())
}

/// `combine:` as written, or `default`.
fn combine(cx: &Ctx, path: &[&str], raw: Option<&str>, default: Combine) -> Result<Combine> {
    match raw {
        None => Ok(default),
        Some("error") => Ok(Combine::Error),
        Some("union") => Ok(Combine::Union),
        Some(other) => Err(cx.err(
            path,
            format!(
                "`combine` must be `error` or `union`, not `{other}`{}",
                did_you_mean(other, ["error", "union"])
            ),
        )),
    }
}

/// `on_denied:` as written, or `default`.
fn on_denied(cx: &Ctx, path: &[&str], raw: Option<&str>, default: OnDenied) -> Result<OnDenied> {
    match raw {
        None => Ok(default),
        Some("error") => Ok(OnDenied::Error),
        Some("empty") => Ok(OnDenied::Empty),
        Some(other) => Err(cx.err(
            path,
            format!("on_denied must be `error` or `empty`, not `{other}`"),
        )),
    }
}

fn compile_database(
    cx: &Ctx,
    name: &str,
    raw: &RawDatabase,
    policy_denied: OnDenied,
    policy_combine: Combine,
) -> Result<Database> {
    let db_denied = on_denied(
        cx,
        &["databases", name, "on_denied"],
        raw.on_denied.as_deref(),
        policy_denied,
    )?;
    let db_combine = combine(
        cx,
        &["databases", name, "combine"],
        raw.combine.as_deref(),
        policy_combine,
    )?;
    let dialect: Dialect = raw.dialect.parse().map_err(|_| {
        cx.err(
            &["databases", name, "dialect"],
            format!(
                "dialect `{}` is not supported (supported: {})",
                raw.dialect,
                Dialect::ALL.map(Dialect::name).join(", ")
            ),
        )
    })?;
    let default_schema = dialect.normalize_policy_name(
        raw.default_schema
            .as_deref()
            .unwrap_or(dialect.default_schema()),
    );
    let mut tables: HashMap<TableKey, Table> = HashMap::new();
    let mut schemas = HashSet::new();
    let mut declared_fks = Vec::new();
    for (tname, t) in &raw.tables {
        let path = ["databases", name, "tables", tname.as_str()];
        let (schema, table) = match tname.split('.').collect::<Vec<_>>().as_slice() {
            [t] => (
                raw.default_schema
                    .clone()
                    .unwrap_or_else(|| dialect.default_schema().to_string()),
                t.to_string(),
            ),
            [s, t] if !s.is_empty() && !t.is_empty() => (s.to_string(), t.to_string()),
            _ => {
                return Err(cx.err(
                    &path,
                    format!("table name `{tname}` must be `table` or `schema.table`"),
                ))
            }
        };
        let key = TableKey {
            schema: dialect.normalize_policy_name(&schema),
            name: dialect.normalize_policy_name(&table),
        };
        // In the order declared (the table's, for `SELECT *`).
        let mut columns: Vec<Column> = Vec::new();
        for (cname, ty) in t.columns.declared() {
            let ty = ColumnType::parse(ty).ok_or_else(|| {
                cx.err(
                    &["databases", name, "tables", tname, "columns", cname],
                    format!("column `{cname}` has unknown type `{ty}` (integer, decimal, text, boolean, date, timestamp, uuid)"),
                )
            })?;
            let ckey = dialect.normalize_policy_name(cname);
            if columns.iter().any(|c| c.key == ckey) {
                return Err(cx.err(
                    &["databases", name, "tables", tname, "columns", cname],
                    format!("duplicate column `{cname}` in table `{tname}`"),
                ));
            }
            columns.push(Column {
                name: cname.clone(),
                key: ckey,
                ty,
            });
        }
        if columns.is_empty() {
            return Err(cx.err(&path, format!("table `{tname}` declares no columns")));
        }
        let combine = combine(
            cx,
            &["databases", name, "tables", tname, "combine"],
            t.combine.as_deref(),
            db_combine,
        )?;
        schemas.insert(key.schema.clone());
        if !t.foreign_keys.is_empty() {
            declared_fks.push((key.clone(), tname, &t.foreign_keys));
        }
        let mut denied_path = path.to_vec();
        denied_path.push("on_denied");
        let table = Table {
            key: key.clone(),
            schema,
            name: table,
            columns,
            combine,
            foreign_keys: Vec::new(),
            on_denied: on_denied(cx, &denied_path, t.on_denied.as_deref(), db_denied)?,
        };
        if tables.insert(key, table).is_some() {
            return Err(cx.err(&path, format!("table `{tname}` is declared twice")));
        }
    }
    // Foreign keys, once every table is known (they may point forward).
    let mut resolved = Vec::new();
    for (key, tname, declared) in declared_fks {
        let Some(source) = tables.get(&key) else {
            continue;
        };
        let mut fks = Vec::new();
        for (col, target) in declared {
            let path = [
                "databases",
                name,
                "tables",
                tname.as_str(),
                "foreign_keys",
                col.as_str(),
            ];
            fks.push(compile_foreign_key(
                cx,
                &path,
                dialect,
                &default_schema,
                &tables,
                source,
                col,
                target,
            )?);
        }
        resolved.push((key, fks));
    }
    for (key, fks) in resolved {
        if let Some(t) = tables.get_mut(&key) {
            t.foreign_keys = fks;
        }
    }
    let tables: HashMap<TableKey, Arc<Table>> =
        tables.into_iter().map(|(k, t)| (k, Arc::new(t))).collect();
    let mut column_types: HashMap<String, Option<ColumnType>> = HashMap::new();
    for t in tables.values() {
        for c in &t.columns {
            column_types
                .entry(c.key.clone())
                .and_modify(|e| {
                    if *e != Some(c.ty) {
                        *e = None;
                    }
                })
                .or_insert(Some(c.ty));
        }
    }
    let routing = match &raw.routing {
        None => None,
        Some(r) => {
            if r.destinations.is_empty() {
                return Err(cx.err(
                    &["databases", name, "routing"],
                    "routing needs at least one destination",
                ));
            }
            if let Some(reserved) = [ROUTER, METABASE_ROUTER]
                .into_iter()
                .find(|k| r.destinations.contains_key(*k))
            {
                return Err(cx.err(
                    &["databases", name, "routing", "destinations"],
                    format!("`{reserved}` is reserved for the router database itself"),
                ));
            }
            for (g, slug) in &r.groups {
                if !r.destinations.contains_key(slug) && slug != ROUTER && slug != METABASE_ROUTER {
                    return Err(cx.err(
                        &["databases", name, "routing", "groups", g.as_str()],
                        format!(
                            "group `{g}` is routed to `{slug}`, which names no destination (destinations: {})",
                            r.destinations.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            let mut schemas = BTreeMap::new();
            let mut catalogs = BTreeMap::new();
            for (slug, d) in &r.destinations {
                let path = ["databases", name, "routing", "destinations", slug.as_str()];
                if let Some(catalog) = &d.catalog {
                    if d.database.is_some() {
                        return Err(cx.err(
                            &path,
                            format!("destination `{slug}` names a database and a catalog; it is one or the other"),
                        ));
                    }
                    if let Some(why) = dialect.no_catalogs() {
                        return Err(cx.err(
                            &path,
                            format!("destination `{slug}` is a catalog, and {why}"),
                        ));
                    }
                    if catalog.trim().is_empty() {
                        return Err(cx.err(
                            &path,
                            format!("destination `{slug}` has an empty catalog name"),
                        ));
                    }
                    let declared: HashSet<&str> =
                        tables.values().map(|t| t.key.schema.as_str()).collect();
                    if d.schema.is_some() && declared.len() != 1 {
                        return Err(cx.err(
                            &path,
                            format!("a schema inside a catalog destination replaces the schema of every table, and database `{name}` has tables in {} schemas (one is needed)", declared.len()),
                        ));
                    }
                    catalogs.insert(slug.clone(), catalog.clone());
                }
                let Some(schema) = &d.schema else { continue };
                if d.database.is_some() {
                    return Err(cx.err(
                        &path,
                        format!("destination `{slug}` names a database and a schema; it is one or the other"),
                    ));
                }
                let declared: HashSet<&str> =
                    tables.values().map(|t| t.key.schema.as_str()).collect();
                if declared.len() != 1 {
                    return Err(cx.err(
                        &path,
                        format!("a schema destination replaces the schema of every table, and database `{name}` has tables in {} schemas (one is needed)", declared.len()),
                    ));
                }
                if schema.trim().is_empty() {
                    return Err(cx.err(
                        &path,
                        format!("destination `{slug}` has an empty schema name"),
                    ));
                }
                schemas.insert(slug.clone(), schema.clone());
            }
            Some(Routing {
                schemas,
                catalogs,
                groups: r
                    .groups
                    .iter()
                    .map(|(g, d)| (g.clone(), d.clone()))
                    .collect(),
                allow_anonymous: r.allow_anonymous,
                attribute: r.attribute.clone(),
                destinations: r
                    .destinations
                    .iter()
                    .map(|(k, d)| (k.clone(), d.database.clone()))
                    .collect(),
            })
        }
    };
    let impersonation = raw.impersonation.as_ref().map(|i| Impersonation {
        attribute: i.attribute.clone(),
    });
    Ok(Database {
        tenant_roles: raw.tenant_roles.clone(),
        routing,
        impersonation,
        column_types,
        name: name.to_string(),
        dialect,
        default_schema,
        fence: match raw.fence {
            None => FenceMode::Auto,
            Some(super::model::RawFence::Mode(m)) => m,
            Some(super::model::RawFence::Bool(true)) => FenceMode::Always,
            Some(super::model::RawFence::Bool(false)) => FenceMode::Never,
        },
        tables,
        schemas,
    })
}

/// Resolves `column: [schema.]table.column` of table `source`.
#[allow(clippy::too_many_arguments)]
fn compile_foreign_key(
    cx: &Ctx,
    path: &[&str],
    dialect: Dialect,
    default_schema: &str,
    tables: &HashMap<TableKey, Table>,
    source: &Table,
    col: &str,
    target: &str,
) -> Result<ForeignKey> {
    let tname = source.qualified();
    let from = source
        .column(&dialect.normalize_policy_name(col))
        .ok_or_else(|| cx.err(path, format!("table `{tname}` has no column `{col}`")))?;
    let (schema, table, column) = match target.split('.').collect::<Vec<_>>().as_slice() {
        [t, c] => (default_schema.to_string(), *t, *c),
        [s, t, c] => (dialect.normalize_policy_name(s), *t, *c),
        _ => {
            return Err(cx.err(
                path,
                format!(
                    "foreign key target `{target}` must be `table.column` or `schema.table.column`"
                ),
            ))
        }
    };
    let key = TableKey {
        schema,
        name: dialect.normalize_policy_name(table),
    };
    let to_table = tables.get(&key).ok_or_else(|| {
        cx.err(
            path,
            format!("foreign key `{tname}.{col}` points at unknown table `{table}`"),
        )
    })?;
    let to = to_table
        .column(&dialect.normalize_policy_name(column))
        .ok_or_else(|| {
            cx.err(
                path,
                format!(
                    "foreign key `{tname}.{col}` points at unknown column `{column}` of `{}`",
                    to_table.qualified()
                ),
            )
        })?;
    if !from.ty.compatible(to.ty) {
        return Err(cx.err(
            path,
            format!(
                "foreign key `{tname}.{col}` is {} but `{}.{}` is {}",
                from.ty,
                to_table.qualified(),
                to.name,
                to.ty
            ),
        ));
    }
    Ok(ForeignKey {
        column: from.key.clone(),
        target: key,
        target_column: to.key.clone(),
    })
}

fn sorted(set: &HashSet<String>) -> String {
    let mut v: Vec<&str> = set.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.join(", ")
}

#[allow(clippy::too_many_arguments)]
fn compile_group(
    cx: &Ctx,
    name: &str,
    raw: &RawGroup,
    databases: &BTreeMap<String, Database>,
    questions: &BTreeMap<String, Arc<Question>>,
    collections: &BTreeMap<String, Collection>,
    declared: Option<&HashSet<String>>,
    attribute_types: &HashMap<String, AttributeType>,
) -> Result<Group> {
    let mut data = HashMap::new();
    for (dbname, access) in &raw.data {
        let path = ["groups", name, "data", dbname.as_str()];
        let db = databases.get(dbname).ok_or_else(|| {
            cx.err(
                &path,
                format!(
                    "group `{name}` grants unknown database `{dbname}`{}",
                    did_you_mean(dbname, databases.keys().map(String::as_str))
                ),
            )
        })?;
        let grant = match access {
            RawDbAccess::Level(l) => match l.as_str() {
                "unrestricted" => DbGrant::Unrestricted,
                "blocked" => DbGrant::Blocked,
                "no_access" => DbGrant::NoAccess,
                other => {
                    return Err(cx.err(
                        &path,
                        format!("database access must be unrestricted, blocked, no_access or a map of schemas, not `{other}`{}", did_you_mean(other, ["unrestricted", "blocked", "no_access"])),
                    ))
                }
            },
            RawDbAccess::Schemas(schemas) => {
                let mut out = HashMap::new();
                for (sname, sacc) in schemas {
                    let spath = ["groups", name, "data", dbname.as_str(), sname.as_str()];
                    let skey = db.dialect.normalize_policy_name(sname);
                    if !db.schemas.contains(&skey) {
                        return Err(cx.err(
                            &spath,
                            format!(
                                "schema `{sname}` has no declared tables in database `{dbname}`{}",
                                did_you_mean(&skey, db.schemas.iter().map(String::as_str))
                            ),
                        ));
                    }
                    let sg = match sacc {
                        RawSchemaAccess::Level(l) => match l.as_str() {
                            "unrestricted" => SchemaGrant::Unrestricted,
                            "no_access" => SchemaGrant::NoAccess,
                            other => {
                                return Err(cx.err(
                                    &spath,
                                    format!("schema access must be unrestricted, no_access or a map of tables, not `{other}`{}", did_you_mean(other, ["unrestricted", "no_access"])),
                                ))
                            }
                        },
                        RawSchemaAccess::Tables(ts) => {
                            let mut tmap = HashMap::new();
                            for (tname, tacc) in ts {
                                let tpath = [
                                    "groups",
                                    name,
                                    "data",
                                    dbname.as_str(),
                                    sname.as_str(),
                                    tname.as_str(),
                                ];
                                let tkey = TableKey {
                                    schema: skey.clone(),
                                    name: db.dialect.normalize_policy_name(tname),
                                };
                                let table = db.table(&tkey).ok_or_else(|| {
                                    cx.err(
                                        &tpath,
                                        format!(
                                            "unknown table `{sname}.{tname}` in database `{dbname}`{}",
                                            did_you_mean(
                                                tname,
                                                db.tables
                                                    .keys()
                                                    .filter(|k| k.schema == skey)
                                                    .map(|k| k.name.as_str())
                                            )
                                        ),
                                    )
                                })?;
                                let tg = match tacc {
                                    RawTableAccess::Level(l) => match l.as_str() {
                                        "unrestricted" => TableGrant::Unrestricted,
                                        "no_access" => TableGrant::NoAccess,
                                        other => {
                                            return Err(cx.err(
                                                &tpath,
                                                format!("table access must be unrestricted, no_access or {{sandbox: ...}}, not `{other}`{}", did_you_mean(other, ["unrestricted", "no_access"])),
                                            ))
                                        }
                                    },
                                    RawTableAccess::Sandboxed(s) => {
                                        let env = RuleEnv { db, table, group: name, attribute_types, declared };
                                        let sb = compile_table_access(cx, &tpath, &env, s, questions)?;
                                        TableGrant::Sandbox(Arc::new(sb))
                                    }
                                };
                                if tmap.insert(tkey.name.clone(), tg).is_some() {
                                    return Err(cx.err(&tpath, format!("table `{tname}` is listed twice")));
                                }
                            }
                            SchemaGrant::Tables(tmap)
                        }
                    };
                    if out.insert(skey, sg).is_some() {
                        return Err(cx.err(&spath, format!("schema `{sname}` is listed twice")));
                    }
                }
                DbGrant::Schemas(out)
            }
        };
        data.insert(dbname.clone(), grant);
    }
    let mut native = HashSet::new();
    for (dbname, on) in &raw.native {
        if !databases.contains_key(dbname) {
            return Err(cx.err(
                &["groups", name, "native", dbname],
                format!("group `{name}` grants native SQL on unknown database `{dbname}`"),
            ));
        }
        if *on {
            native.insert(dbname.clone());
        }
    }
    let mut queries = HashMap::new();
    for (dbname, level) in &raw.queries {
        let path = ["groups", name, "queries", dbname.as_str()];
        if !databases.contains_key(dbname) {
            return Err(cx.err(
                &path,
                format!("group `{name}` sets query creation on unknown database `{dbname}`"),
            ));
        }
        let l = match level.as_str() {
            "none" | "no" => QueryLevel::None,
            "builder" | "query-builder" => QueryLevel::Builder,
            "native" | "query-builder-and-native" => QueryLevel::Native,
            other => {
                return Err(cx.err(
                    &path,
                    format!("query creation must be none, builder or native (Metabase's no, query-builder, query-builder-and-native), not `{other}`"),
                ))
            }
        };
        match (l, native.contains(dbname), raw.native.get(dbname)) {
            (QueryLevel::Native, _, Some(false)) => {
                return Err(cx.err(
                    &path,
                    format!("group `{name}`: `queries: native` and `native: false` contradict each other on `{dbname}`"),
                ))
            }
            (QueryLevel::None | QueryLevel::Builder, true, _) => {
                return Err(cx.err(
                    &path,
                    format!("group `{name}`: `queries: {level}` and `native: true` contradict each other on `{dbname}`"),
                ))
            }
            (QueryLevel::Native, _, _) => {
                native.insert(dbname.clone());
            }
            _ => {}
        }
        queries.insert(dbname.clone(), l);
    }
    let mut colls = HashMap::new();
    for (cname, level) in &raw.collections {
        let path = ["groups", name, "collections", cname.as_str()];
        if !collections.contains_key(cname) {
            return Err(cx.err(&path, format!("unknown collection `{cname}`")));
        }
        let l = match level.as_str() {
            "curate" | "write" => CollectionLevel::Curate,
            "view" | "read" => CollectionLevel::View,
            "none" | "no_access" => CollectionLevel::None,
            other => {
                return Err(cx.err(
                    &path,
                    format!(
                        "collection access must be curate, view or none (Metabase's write, read, none), not `{other}`{}",
                        did_you_mean(other, ["curate", "view", "none", "write", "read"])
                    ),
                ))
            }
        };
        colls.insert(cname.clone(), l);
    }
    let sandboxed_dbs = data
        .iter()
        .filter(|(_, g)| match g {
            DbGrant::Schemas(s) => s.values().any(|sg| match sg {
                SchemaGrant::Tables(t) => t.values().any(|tg| matches!(tg, TableGrant::Sandbox(_))),
                _ => false,
            }),
            _ => false,
        })
        .map(|(d, _)| d.clone())
        .collect();
    Ok(Group {
        sandboxed_dbs,
        name: name.to_string(),
        data,
        native,
        queries,
        collections: colls,
    })
}

fn compile_sandbox(
    cx: &Ctx,
    path: &[&str],
    group: &str,
    db: &Database,
    table: &Table,
    raw: &RawSandbox,
    questions: &BTreeMap<String, Arc<Question>>,
) -> Result<Sandbox> {
    let mut spath: Vec<&str> = path.to_vec();
    spath.push("sandbox");
    let tname = table.qualified();
    let basic_given = raw.column.is_some() || raw.attribute.is_some() || !raw.filters.is_empty();
    if raw.run_as.is_some() && raw.filter.is_none() {
        return Err(cx.err(&spath, "`as` belongs to a `filter` rule"));
    }
    let kind = match (&raw.question, basic_given) {
        _ if raw.filter.is_some() => {
            return Err(cx.err(
                &spath,
                "a `filter` sandbox is compiled as a rule; this is a bug",
            ))
        }
        (Some(_), true) => {
            return Err(cx.err(
                &spath,
                "a sandbox is either basic (`column` + `attribute`, or `filters`) or custom (`question`), not both",
            ))
        }
        (None, false) => {
            return Err(cx.err(
                &spath,
                "a sandbox needs `column` + `attribute`, `filters`, or `question`",
            ))
        }
        (None, true) => {
            if !raw.parameters.is_empty() {
                return Err(cx.err(&spath, "`parameters` belong to custom (question) sandboxes"));
            }
            let mut pairs: Vec<(&str, &str)> = Vec::new();
            match (&raw.column, &raw.attribute) {
                (Some(c), Some(a)) => pairs.push((c, a)),
                (None, None) => {}
                _ => {
                    return Err(cx.err(
                        &spath,
                        "a basic sandbox needs both `column` and `attribute`",
                    ))
                }
            }
            for f in &raw.filters {
                pairs.push((&f.column, &f.attribute));
            }
            let mut filters = Vec::new();
            for (c, a) in pairs {
                let col = table
                    .column(&db.dialect.normalize_policy_name(c))
                    .ok_or_else(|| cx.err(&spath, format!("table `{tname}` has no column `{c}`")))?;
                if a.trim().is_empty() {
                    return Err(cx.err(&spath, "empty attribute name"));
                }
                filters.push(BasicFilter {
                    column: col.name.clone(),
                    ty: col.ty,
                    attribute: a.to_string(),
                });
            }
            SandboxKind::Basic(filters)
        }
        (Some(qname), false) => {
            let q = questions.get(qname).ok_or_else(|| {
                cx.err(&spath, format!("sandbox names unknown question `{qname}`"))
            })?;
            if table.combine == Combine::Union
                && question::filter_of(&q.query, table, db.dialect).is_none()
            {
                return Err(cx.err(
                    &spath,
                    format!("table `{tname}` has `combine: union` (its own, or its database's or the policy's), which ORs conditions on the table's rows; the sandbox question `{qname}` does more than filter the table (`SELECT <its columns> FROM {tname} WHERE …`), so its rows cannot be combined with another sandbox's"),
                ));
            }
            if q.database != db.name {
                return Err(cx.err(
                    &spath,
                    format!("question `{qname}` runs on database `{}`, not `{}`", q.database, db.name),
                ));
            }
            let columns = match &q.columns {
                Some(c) => c.clone(),
                None => question::output_columns(&q.query, db)
                    .map_err(|m| cx.err(&spath, format!("sandbox question `{qname}`: {m}")))?,
            };
            let mut seen = HashSet::new();
            for (c, ty) in &columns {
                let col = table.column(c).ok_or_else(|| {
                    cx.err(
                        &spath,
                        format!("sandbox question `{qname}` returns column `{c}`, which table `{tname}` does not have (a sandbox may hide columns, never add them)"),
                    )
                })?;
                match ty {
                    Some(ty) if !ty.compatible(col.ty) => {
                        return Err(cx.err(
                            &spath,
                            format!("sandbox question `{qname}` returns `{c}` as {ty}, but `{tname}.{}` is {}", col.name, col.ty),
                        ));
                    }
                    Some(_) => {}
                    // The database would find out only when the query runs;
                    // the policy must say what the question returns.
                    None => {
                        return Err(cx.err(
                            &spath,
                            format!("sandbox question `{qname}` returns `{c}`, whose type sqlsandbox cannot infer (an expression it does not know, or a column of a subquery); declare it on the question (`columns: {{{c}: {}}}`)", col.ty),
                        ));
                    }
                }
                if !seen.insert(c.clone()) {
                    return Err(cx.err(&spath, format!("sandbox question `{qname}` returns column `{c}` twice")));
                }
            }
            let mut parameters = Vec::new();
            for (var, p) in &raw.parameters {
                if !q.variables.contains(var) {
                    return Err(cx.err(
                        &spath,
                        format!("parameter `{var}` is not a variable of question `{qname}` (it has: {})", q.variables.join(", ")),
                    ));
                }
                let (attribute, ty) = match p {
                    RawParameter::Attribute(_) if q.untyped.contains(var) => {
                        return Err(cx.err(
                            &spath,
                            format!("sandbox question `{qname}`: {}; declare it here (`{var}: {{attribute: …, type: …}}`) or on the question (`variables: {{{var}: …}}`)", untyped_use(var)),
                        ))
                    }
                    RawParameter::Attribute(a) => (a.clone(), q.inferred.get(var).copied()),
                    RawParameter::Typed { attribute, ty } => (
                        attribute.clone(),
                        Some(ColumnType::parse(ty).ok_or_else(|| {
                            cx.err(&spath, format!("parameter `{var}` has unknown type `{ty}`"))
                        })?),
                    ),
                };
                parameters.push(Parameter {
                    variable: var.clone(),
                    attribute,
                    ty,
                });
            }
            if let Some(v) = q.variables.iter().find(|v| !raw.parameters.contains_key(*v)) {
                return Err(cx.err(
                    &spath,
                    format!("variable `{{{{{v}}}}}` of question `{qname}` is not mapped to a user attribute (every variable is required)"),
                ));
            }
            SandboxKind::Custom {
                question: qname.clone(),
                parameters,
            }
        }
    };
    Ok(Sandbox {
        group: group.to_string(),
        kind,
        restrictive: Vec::new(),
        writes: Vec::new(),
        masks: Vec::new(),
    })
}

/// What a rule is compiled against.
struct RuleEnv<'a> {
    db: &'a Database,
    table: &'a Table,
    group: &'a str,
    attribute_types: &'a HashMap<String, AttributeType>,
    declared: Option<&'a HashSet<String>>,
}

/// A group's `{sandbox: …, rules: […]}` on one table.
fn compile_table_access(
    cx: &Ctx,
    tpath: &[&str],
    env: &RuleEnv,
    raw: &RawSandboxed,
    questions: &BTreeMap<String, Arc<Question>>,
) -> Result<Sandbox> {
    let mut permissive: Vec<Arc<Rule>> = Vec::new();
    let mut restrictive: Vec<Arc<Rule>> = Vec::new();
    let mut writes: Vec<Arc<Rule>> = Vec::new();
    let mut sandbox: Option<SandboxKind> = None;
    if let Some(sb) = &raw.sandbox {
        let mut spath = tpath.to_vec();
        spath.push("sandbox");
        if let Some(filter) = &sb.filter {
            if sb.column.is_some()
                || sb.attribute.is_some()
                || !sb.filters.is_empty()
                || sb.question.is_some()
                || !sb.parameters.is_empty()
            {
                return Err(cx.err(
                    &spath,
                    "a `filter` sandbox takes no `column`, `attribute`, `filters`, `question` or `parameters`",
                ));
            }
            let definer = run_as(cx, &spath, sb.run_as.as_deref())?;
            permissive.push(Arc::new(compile_rule(
                cx, &spath, env, filter, false, None, definer, None, 1,
            )?));
        } else {
            let compiled = compile_sandbox(cx, tpath, env.group, env.db, env.table, sb, questions)?;
            if let Some(d) = env.declared {
                let attrs: Vec<&str> = match &compiled.kind {
                    SandboxKind::Basic(f) => f.iter().map(|f| f.attribute.as_str()).collect(),
                    SandboxKind::Custom { parameters, .. } => {
                        parameters.iter().map(|p| p.attribute.as_str()).collect()
                    }
                    _ => Vec::new(),
                };
                if let Some(a) = attrs.into_iter().find(|a| !d.contains(*a)) {
                    return Err(cx.err(
                        &spath,
                        format!(
                            "sandbox uses unknown attribute `{a}` (declared attributes: {}){}",
                            sorted(d),
                            did_you_mean(a, d.iter().map(String::as_str))
                        ),
                    ));
                }
            }
            sandbox = Some(compiled.kind);
        }
    }
    for (i, r) in raw.rules.iter().enumerate() {
        let idx = i.to_string();
        let mut rpath = tpath.to_vec();
        rpath.push("rules");
        rpath.push(&idx);
        let definer = run_as(cx, &rpath, r.run_as.as_deref())?;
        if r.restrictive && r.columns.is_some() {
            return Err(cx.err(
                &rpath,
                "a restrictive rule narrows rows only; `columns` belong to permissive rules",
            ));
        }
        let commands = commands(cx, &rpath, r.commands.as_deref())?;
        if commands.writes() && r.columns.is_some() {
            return Err(cx.err(
                &rpath,
                "`columns` apply to reads; a write rule cannot have them (give the read its own rule)",
            ));
        }
        if commands.writes()
            && !matches!(
                env.db.dialect,
                Dialect::Postgres | Dialect::Mysql | Dialect::Sqlite
            )
        {
            return Err(cx.err(
                &rpath,
                format!(
                    "write rules are proven on PostgreSQL, MySQL/MariaDB and SQLite only, not on {}: keep writes on this database out of sqlsandbox (the analytics engines are read-only here)",
                    env.db.dialect
                ),
            ));
        }
        let mut rule = compile_rule(
            cx,
            &rpath,
            env,
            &r.filter,
            r.restrictive,
            r.columns.as_deref(),
            definer,
            r.name.as_deref(),
            i + 1,
        )?;
        rule.commands = commands;
        if r.check.is_some() && !(commands.insert || commands.update) {
            return Err(cx.err(&rpath, "`check` belongs to rules for insert or update"));
        }
        if commands.insert || commands.update {
            if let Some(text) = &r.check {
                let mut c = compile_rule(
                    cx,
                    &rpath,
                    env,
                    text,
                    r.restrictive,
                    None,
                    definer,
                    r.name.as_deref(),
                    i + 1,
                )?;
                c.commands = commands;
                rule.check = Some(Arc::new(c));
            }
            let reads = rule.check.as_ref().map_or(&rule.reads, |c| &c.reads);
            if !reads.is_empty() {
                return Err(cx.err(
                    &rpath,
                    "a rule for insert or update checks each written row by putting its new values into the check; a check that reads other tables cannot be checked so (give the write its own `check` over the row's columns)",
                ));
            }
        }
        let rule = Arc::new(rule);
        if commands.writes() {
            writes.push(Arc::clone(&rule));
        }
        if commands.select {
            if r.restrictive {
                restrictive.push(rule);
            } else {
                permissive.push(rule);
            }
        }
    }
    let tname = env.table.qualified();
    let kind = match sandbox {
        Some(kind) if !permissive.is_empty() => {
            return Err(cx.err(
                tpath,
                format!("table `{tname}`: a {} and permissive rules cannot both be given; write the sandbox as a rule", kind.describe()),
            ))
        }
        Some(kind @ SandboxKind::Custom { .. }) if !restrictive.is_empty() => {
            return Err(cx.err(
                tpath,
                format!("table `{tname}`: restrictive rules cannot narrow a {} (its question decides the rows; write the restriction into it)", kind.describe()),
            ))
        }
        Some(kind) => kind,
        None if permissive.is_empty()
            && restrictive.is_empty()
            && writes.is_empty()
            && raw.masks.is_empty() =>
        {
            return Err(cx.err(
                tpath,
                "a table grant needs `sandbox`, `rules` or `masks`",
            ))
        }
        // Masks alone: every row, the columns masked.
        None if permissive.is_empty() && restrictive.is_empty() && writes.is_empty() => {
            SandboxKind::All
        }
        None => SandboxKind::Rules(permissive),
    };
    let masks = compile_masks(cx, tpath, env, &raw.masks)?;
    if matches!(&kind, SandboxKind::Rules(r) if r.is_empty()) && !masks.is_empty() {
        return Err(cx.err(
            tpath,
            format!("table `{tname}`: masks belong to a grant that grants rows (this one has no permissive rule to read by)"),
        ));
    }
    if let (SandboxKind::Custom { question, .. }, false) = (&kind, masks.is_empty()) {
        return Err(cx.err(
            tpath,
            format!("table `{tname}`: masks cannot apply on top of a custom sandbox (question `{question}` decides the columns; write the mask into it, or use row rules)"),
        ));
    }
    Ok(Sandbox {
        group: env.group.to_string(),
        kind,
        restrictive,
        writes,
        masks,
    })
}

/// A grant's `masks:`, in the table's column order.
fn compile_masks(
    cx: &Ctx,
    tpath: &[&str],
    env: &RuleEnv,
    raw: &UMap<Option<RawMask>>,
) -> Result<Vec<Arc<Mask>>> {
    let db = env.db;
    let table = env.table;
    let tname = table.qualified();
    let mut out: Vec<Arc<Mask>> = Vec::new();
    for (cname, spec) in raw {
        let mut mpath = tpath.to_vec();
        mpath.push("masks");
        mpath.push(cname);
        let fail = |m: String| cx.err(&mpath, format!("mask on `{tname}.{cname}`: {m}"));
        let key = db.dialect.normalize_policy_name(cname);
        let Some(column) = table.column(&key) else {
            return Err(fail(format!(
                "`{cname}` is not a declared column of the table (columns: {})",
                table
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if out.iter().any(|m| m.column == key) {
            return Err(fail("the column has two masks".into()));
        }
        let default_spec = RawMaskSpec::default();
        let (kind_name, spec) = match spec {
            None => (Some("null"), &default_spec),
            Some(RawMask::Kind(k)) => (Some(k.as_str()), &default_spec),
            Some(RawMask::Spec(s)) => (None, &**s),
        };
        let mut kinds: Vec<MaskKind> = Vec::new();
        let mut value: Option<(crate::value::Scalar, ColumnType)> = None;
        let mut key_in_file = false;
        let declared_ty = match &spec.ty {
            None => None,
            Some(t) => Some(ColumnType::parse(t).ok_or_else(|| {
                fail(format!(
                    "unknown type `{t}` (expected integer, decimal, text, boolean, date, timestamp or uuid)"
                ))
            })?),
        };
        match kind_name {
            Some("null") => kinds.push(MaskKind::Null),
            Some("email") => kinds.push(MaskKind::Email),
            Some("hash") => {
                return Err(fail(
                    "a `hash` mask needs a key: `{hash: {key_env: VARIABLE}}` (or `{hash: {key: …}}`)".into(),
                ))
            }
            Some(other) => {
                return Err(fail(format!(
                    "unknown mask `{other}` (expected null, email, or a map with one of null, constant, hash, first, last, email, truncate, bucket, expression)"
                )))
            }
            None => {}
        }
        if spec.null == Some(true) {
            kinds.push(MaskKind::Null);
        }
        if spec.email == Some(true) {
            kinds.push(MaskKind::Email);
        }
        if spec.null == Some(false) || spec.email == Some(false) {
            return Err(fail(
                "`null: false` and `email: false` mean nothing; leave the key out".into(),
            ));
        }
        if let Some(c) = &spec.constant {
            let scalar = match AttributeValue::from_yaml(c) {
                Some(AttributeValue::Single(s)) => s,
                _ => return Err(fail("`constant` must be one scalar value".into())),
            };
            let ty = declared_ty.unwrap_or(column.ty);
            let what = || format!("the constant of the mask on {tname}.{cname}");
            let target = crate::bind::Target {
                attribute: "constant",
                what: &what,
            };
            let coerced = crate::bind::coerce(&scalar, Some(ty), &target).map_err(|e| {
                fail(format!(
                    "{e} (declare the masked type with `type:` when it is not the column's)"
                ))
            })?;
            kinds.push(MaskKind::Constant(scalar.to_string()));
            value = Some((coerced, ty));
        }
        if let Some(h) = &spec.hash {
            let key = match (&h.key, &h.key_env) {
                (Some(k), None) => {
                    key_in_file = true;
                    k.clone()
                }
                (None, Some(var)) => {
                    let key = std::env::var(var).map_err(|_| {
                        fail(format!(
                            "the hash key's environment variable `{var}` is not set (or not UTF-8)"
                        ))
                    })?;
                    cx.env.borrow_mut().push((var.clone(), key.clone()));
                    key
                }
                _ => {
                    return Err(fail(
                        "a `hash` mask takes exactly one of `key` and `key_env`".into(),
                    ))
                }
            };
            if key.chars().count() < 16 {
                return Err(fail(
                    "the hash key is shorter than 16 characters: a short key lets anyone hash guesses and join them with the masked values".into(),
                ));
            }
            kinds.push(MaskKind::Hash);
            value = Some((crate::value::Scalar::Text(key), ColumnType::Text));
        }
        if let Some(n) = spec.first {
            kinds.push(MaskKind::First(n));
        }
        if let Some(n) = spec.last {
            kinds.push(MaskKind::Last(n));
        }
        if let Some(u) = &spec.truncate {
            kinds.push(MaskKind::Truncate(u.to_ascii_lowercase()));
        }
        if let Some(b) = &spec.bucket {
            let size = match b {
                crate::yaml::Value::String(s) => s.clone(),
                n => match n.number_text() {
                    Some(t) => t,
                    None => return Err(fail("`bucket` must be a positive number".into())),
                },
            };
            kinds.push(MaskKind::Bucket(size));
        }
        if let Some(e) = &spec.expression {
            kinds.push(MaskKind::Expression(e.clone()));
        }
        let kind = match kinds.len() {
            1 => kinds.remove(0),
            0 => return Err(fail("no mask kind given (null, constant, hash, first, last, email, truncate, bucket or expression)".into())),
            _ => return Err(fail("several mask kinds given; a column has one mask".into())),
        };
        if declared_ty.is_some() && !matches!(kind, MaskKind::Expression(_) | MaskKind::Constant(_))
        {
            return Err(fail(
                "`type` belongs to `expression` and `constant` masks (the others know their type)"
                    .into(),
            ));
        }
        if spec.run_as.is_some() && spec.unless.is_none() {
            return Err(fail("`as` belongs to `unless`".into()));
        }
        let ident = db.dialect.ident(&column.name);
        let (expr, ty, custom) = match &kind {
            MaskKind::Expression(text) => {
                let rule = compile_rule(
                    cx,
                    &mpath,
                    env,
                    text,
                    false,
                    None,
                    false,
                    Some(&format!("mask on {cname}")),
                    1,
                )?;
                if !rule.reads.is_empty() {
                    return Err(fail(
                        "an expression mask reads its own row only (no subqueries)".into(),
                    ));
                }
                let ty = declared_ty.unwrap_or(column.ty);
                (rule.expr.clone(), ty, Some(Arc::new(rule)))
            }
            other => {
                let value_ty = value.as_ref().map_or(column.ty, |(_, t)| *t);
                let (sql, ty) =
                    super::mask::template(other, db.dialect, column.ty, value_ty).map_err(fail)?;
                let expr = super::mask::parse_template(&sql, db.dialect, ident)
                    .map_err(Error::Verification)?;
                (expr, ty, None)
            }
        };
        let unless = match &spec.unless {
            None => None,
            Some(text) => {
                let definer = run_as(cx, &mpath, spec.run_as.as_deref())?;
                Some(Arc::new(compile_rule(
                    cx,
                    &mpath,
                    env,
                    text,
                    false,
                    None,
                    definer,
                    Some(&format!("unless of the mask on {cname}")),
                    1,
                )?))
            }
        };
        if unless.is_some() && ty != column.ty {
            return Err(fail(format!(
                "with `unless`, the masked values ({ty}) and the column's ({}) must have one type, since a row shows one or the other",
                column.ty
            )));
        }
        out.push(Arc::new(Mask {
            group: env.group.to_string(),
            table: table.key.clone(),
            column: key,
            kind,
            ty,
            expr,
            value,
            custom,
            unless,
            key_in_file,
        }));
    }
    // An expression or an `unless` that reads another column this grant
    // masks would show it (or a bit of it) through this one.
    for m in &out {
        for r in m.rules() {
            let masked_read = super::mask::columns_read(&r.expr, table, db.dialect)
                .into_iter()
                .find(|c| *c != m.column && out.iter().any(|o| o.column == *c));
            if let Some(c) = masked_read {
                let col = m.column.as_str();
                return Err(cx.err(
                    &[tpath, &["masks", col]].concat(),
                    format!(
                        "mask on `{tname}.{col}`: it reads `{c}`, which this grant masks too: the stored value of `{c}` would show through the mask on `{col}`"
                    ),
                ));
            }
        }
    }
    out.sort_by_key(|m| table.columns.iter().position(|c| c.key == m.column));
    Ok(out)
}

/// `commands:`: default `[select]`.
fn commands(cx: &Ctx, path: &[&str], raw: Option<&[String]>) -> Result<Commands> {
    let Some(list) = raw else {
        return Ok(Commands {
            select: true,
            ..Commands::default()
        });
    };
    let mut c = Commands::default();
    for name in list {
        match name.to_ascii_lowercase().as_str() {
            "select" => c.select = true,
            "insert" => c.insert = true,
            "update" => c.update = true,
            "delete" => c.delete = true,
            "all" => {
                c = Commands {
                    select: true,
                    insert: true,
                    update: true,
                    delete: true,
                }
            }
            other => {
                return Err(cx.err(
                    path,
                    format!(
                    "unknown command `{other}` (expected select, insert, update, delete or all)"
                ),
                ))
            }
        }
    }
    if c == Commands::default() {
        return Err(cx.err(path, "`commands` is empty"));
    }
    Ok(c)
}

/// `as: invoker | definer`; `true` for definer.
fn run_as(cx: &Ctx, path: &[&str], raw: Option<&str>) -> Result<bool> {
    match raw {
        None | Some("invoker") => Ok(false),
        Some("definer") => Ok(true),
        Some(other) => Err(cx.err(
            path,
            format!("`as` must be `invoker` (tables the rule reads are sandboxed for the same principal) or `definer` (read unrestricted), not `{other}`"),
        )),
    }
}

/// Parses and checks one row rule: a boolean expression over `env.table`'s
/// declared columns, with `{{attribute}}` parameters typed by the declared
/// attribute types or by the columns they are compared with, functions
/// from the allow-list, and subqueries over declared tables only.
#[allow(clippy::too_many_arguments)]
fn compile_rule(
    cx: &Ctx,
    path: &[&str],
    env: &RuleEnv,
    filter: &str,
    restrictive: bool,
    columns: Option<&[String]>,
    definer: bool,
    name: Option<&str>,
    number: usize,
) -> Result<Rule> {
    use sqlparser::ast::{
        visit_expressions, visit_relations, Expr, ObjectNamePart, SetExpr, TableFactor, Visit,
        Visitor,
    };
    use std::ops::ControlFlow;

    let db = env.db;
    let table = env.table;
    let tname = table.qualified();
    let fail = |m: String| cx.err(path, format!("rule on `{tname}`: {m}"));
    let (text, variables) = question::substitute_variables(filter).map_err(fail)?;
    let expr = {
        // Literals stay as written (`'o''neil'`), as the query front end
        // and `recheck` read them: the verifier compares the two.
        let mut p = sqlparser::parser::Parser::new(db.dialect.parser())
            .with_options(sqlparser::parser::ParserOptions::new().with_unescape(false))
            .try_with_sql(&text)
            .map_err(|e| fail(format!("does not parse: {e}")))?;
        let e = p
            .parse_expr()
            .map_err(|e| fail(format!("does not parse: {e}")))?;
        if p.peek_token().token != sqlparser::tokenizer::Token::EOF {
            return Err(fail(format!(
                "does not parse: unexpected `{}` after the condition",
                p.peek_token().token
            )));
        }
        e
    };
    // `SELECT * FROM schema.table WHERE <filter>`: the shape it is applied
    // in, and what the question helpers type and qualify.
    let mut query = question::parse("SELECT * FROM t WHERE 1 = 1", db.dialect)
        .map_err(|m| Error::Verification(format!("rule template: {m}")))?;
    if let SetExpr::Select(select) = query.body.as_mut() {
        select.selection = Some(expr);
        if let Some(TableFactor::Table { name, .. }) =
            select.from.first_mut().map(|f| &mut f.relation)
        {
            *name = sqlparser::ast::ObjectName(vec![
                ObjectNamePart::Identifier(db.dialect.ident(&table.schema)),
                ObjectNamePart::Identifier(db.dialect.ident(&table.name)),
            ]);
        }
    }
    question::qualify_tables(&mut query, db).map_err(fail)?;
    let found = question::markers_in(&query);
    if let Some(v) = variables.iter().find(|v| !found.contains(v)) {
        return Err(fail(format!(
            "`{{{{{v}}}}}` is not in an expression position (inside a string?)"
        )));
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(Error::Verification("rule template is not a SELECT".into()));
    };
    let Some(expr) = select.selection.clone() else {
        return Err(Error::Verification("rule template lost its filter".into()));
    };

    // Functions: the dialect's allow-list and the policy's `functions:`
    // are applied at rewrite (the verifier checks the sandbox as built);
    // always-denied ones are refused here.
    let mut bad_fn: Option<String> = None;
    let _ = visit_expressions(&query, |e| {
        if let Expr::Function(f) = e {
            let n = f.name.to_string().to_ascii_lowercase();
            let last = n
                .rsplit('.')
                .next()
                .unwrap_or(&n)
                .trim_matches('"')
                .to_string();
            if let Some(why) = crate::functions::denied_reason(&last) {
                bad_fn = Some(format!("calls `{n}`, which is never allowed ({why})"));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    if let Some(m) = bad_fn {
        return Err(fail(m));
    }

    // Column names outside subqueries: the table's declared columns.
    struct Cols<'t> {
        table: &'t Table,
        dialect: crate::dialect::Dialect,
        depth: usize,
        bad: Option<String>,
    }
    impl Visitor for Cols<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &sqlparser::ast::Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _q: &sqlparser::ast::Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if self.depth > 0 {
                return ControlFlow::Continue(());
            }
            let col = match e {
                Expr::Identifier(i) if question::marker(e).is_none() => Some(i),
                Expr::CompoundIdentifier(parts) => {
                    let (last, prefix) = match parts.split_last() {
                        Some(x) => x,
                        None => return ControlFlow::Continue(()),
                    };
                    let names: Vec<String> = prefix
                        .iter()
                        .map(|p| self.dialect.normalize(p).into_owned())
                        .collect();
                    let ok = match names.as_slice() {
                        [t] => *t == self.table.key.name,
                        [s, t] => *s == self.table.key.schema && *t == self.table.key.name,
                        _ => false,
                    };
                    if !ok {
                        self.bad = Some(format!(
                            "`{e}` names something other than the table's columns (outside a subquery, a rule reads its own table only)"
                        ));
                        return ControlFlow::Break(());
                    }
                    Some(last)
                }
                _ => None,
            };
            if let Some(c) = col {
                if self.table.column(&self.dialect.normalize(c)).is_none() {
                    self.bad = Some(format!("`{c}` is not a declared column of the table"));
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut cols = Cols {
        table,
        dialect: db.dialect,
        depth: 0,
        bad: None,
    };
    let _ = expr.visit(&mut cols);
    if let Some(m) = cols.bad {
        return Err(fail(m));
    }

    // Tables read by subqueries: declared ones, read plainly.
    let mut reads: Vec<TableKey> = Vec::new();
    let mut bad_read: Option<String> = None;
    let _ = visit_relations(&expr, |name| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(|i| db.dialect.normalize(i).into_owned())
            .collect();
        if let [schema, t] = parts.as_slice() {
            match db.lookup(schema, t) {
                Some(found) => {
                    if !reads.contains(&found.key) {
                        reads.push(found.key.clone());
                    }
                }
                None => {
                    bad_read = Some(format!("reads `{name}`, which the policy does not declare"));
                    return ControlFlow::Break(());
                }
            }
        } else if parts.len() != 1 {
            bad_read = Some(format!(
                "reads `{name}` (a rule reads tables of its own database)"
            ));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if let Some(m) = bad_read {
        return Err(fail(m));
    }
    let mut odd_from: Option<String> = None;
    struct From<'o>(&'o mut Option<String>);
    impl Visitor for From<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
            match f {
                TableFactor::Table { args: None, .. }
                | TableFactor::Derived { .. }
                | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
                other => {
                    *self.0 = Some(format!(
                        "reads `{other}` (rules read tables, not table functions)"
                    ));
                    ControlFlow::Break(())
                }
            }
        }
    }
    let _ = expr.visit(&mut From(&mut odd_from));
    if let Some(m) = odd_from {
        return Err(fail(m));
    }

    // Parameters: declared attributes, typed.
    let uses = question::variable_uses(&query, db);
    let mut parameters = Vec::new();
    for v in &variables {
        if let Some(d) = env.declared {
            if !d.contains(v) {
                return Err(fail(format!(
                    "`{{{{{v}}}}}` is not a declared attribute (declared attributes: {})",
                    sorted(d)
                )));
            }
        }
        let u = uses.get(v);
        let declared_ty = env.attribute_types.get(v).copied();
        if let Some(u) = u {
            if u.predicate > 0
                && declared_ty
                    != Some(AttributeType {
                        ty: ColumnType::Boolean,
                        list: false,
                    })
            {
                return Err(fail(format!(
                    "`{{{{{v}}}}}` stands alone as a condition; only an attribute declared `boolean` may (`attributes: {{{v}: boolean}}`)"
                )));
            }
        }
        let ty = match declared_ty {
            Some(d) => {
                if let Some(other) = u.and_then(|u| u.compared.iter().find(|t| !t.compatible(d.ty)))
                {
                    return Err(fail(format!(
                        "attribute `{v}` is declared {d}, but the rule compares it with a column that is {other}"
                    )));
                }
                if d.list && list_misused(&expr, v) {
                    return Err(fail(format!(
                        "attribute `{v}` is a list: use it as `column IN ({{{{{v}}}}})` or `column = {{{{{v}}}}}`"
                    )));
                }
                Some(d.ty)
            }
            None => {
                let compared = u.map(|u| u.compared.as_slice()).unwrap_or_default();
                if let Some(first) = compared.first() {
                    if let Some(other) = compared.iter().find(|t| !t.compatible(*first)) {
                        return Err(fail(format!(
                            "`{{{{{v}}}}}` is compared with columns of different types ({first} and {other}); declare the attribute's type (`attributes: {{{v}: …}}`)"
                        )));
                    }
                }
                if u.is_some_and(|u| u.untyped > 0) {
                    return Err(fail(format!(
                        "{}; declare the attribute's type (`attributes: {{{v}: …}}`)",
                        untyped_use(v)
                    )));
                }
                compared.first().copied()
            }
        };
        parameters.push(Parameter {
            variable: v.clone(),
            attribute: v.clone(),
            ty,
        });
    }

    let columns = match columns {
        None => None,
        Some(list) => {
            let mut keys = Vec::new();
            for c in list {
                let key = db.dialect.normalize_policy_name(c);
                if table.column(&key).is_none() {
                    return Err(fail(format!(
                        "`columns` names `{c}`, which is not a declared column"
                    )));
                }
                if keys.contains(&key) {
                    return Err(fail(format!("`columns` names `{c}` twice")));
                }
                keys.push(key);
            }
            if keys.is_empty() {
                return Err(fail(
                    "`columns` is empty (a rule shows at least one column)".into(),
                ));
            }
            // Table order, so that the sandbox's column list is stable.
            Some(
                table
                    .columns
                    .iter()
                    .filter(|c| keys.contains(&c.key))
                    .map(|c| c.key.clone())
                    .collect(),
            )
        }
    };
    Ok(Rule {
        group: env.group.to_string(),
        table: table.key.clone(),
        name: name.map_or_else(|| format!("rule {number}"), str::to_string),
        filter: filter.to_string(),
        expr,
        restrictive,
        definer,
        columns,
        parameters,
        reads,
        commands: Commands {
            select: true,
            ..Commands::default()
        },
        check: None,
    })
}

/// Whether list attribute `var` appears anywhere but as one side of `=`
/// or an item of an `IN (…)` list (where several values mean "any of").
fn list_misused(expr: &sqlparser::ast::Expr, var: &str) -> bool {
    use sqlparser::ast::{BinaryOperator, Expr, InTarget, Visit, Visitor};
    use std::ops::ControlFlow;
    struct Count<'v> {
        var: &'v str,
        total: usize,
        allowed: usize,
    }
    impl Visitor for Count<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            let is = |x: &Expr| question::marker(x) == Some(self.var);
            match e {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } => self.allowed += usize::from(is(left)) + usize::from(is(right)),
                Expr::In {
                    target: InTarget::List(list),
                    ..
                } => self.allowed += list.iter().filter(|x| is(x)).count(),
                other if is(other) => self.total += 1,
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut c = Count {
        var,
        total: 0,
        allowed: 0,
    };
    let _ = expr.visit(&mut c);
    c.total > c.allowed
}

/// Refuses a rule on one table that reads (as invoker, through their
/// sandboxes) a table whose rules read the first: the sandboxes would
/// nest forever.
fn rule_cycles(
    cx: &Ctx,
    databases: &BTreeMap<String, Database>,
    groups: &BTreeMap<String, Group>,
) -> Result<()> {
    let mut edges: BTreeMap<(String, String), std::collections::BTreeSet<(String, String)>> =
        BTreeMap::new();
    let key = |db: &str, t: &TableKey| (db.to_string(), format!("{}.{}", t.schema, t.name));
    for g in groups.values() {
        for (dbname, grant) in &g.data {
            let DbGrant::Schemas(schemas) = grant else {
                continue;
            };
            if !databases.contains_key(dbname) {
                continue;
            }
            for sg in schemas.values() {
                let SchemaGrant::Tables(tables) = sg else {
                    continue;
                };
                for tg in tables.values() {
                    let TableGrant::Sandbox(sb) = tg else {
                        continue;
                    };
                    let rules = match &sb.kind {
                        SandboxKind::Rules(r) => r.iter().chain(sb.restrictive.iter()),
                        _ => [].iter().chain(sb.restrictive.iter()),
                    }
                    .chain(sb.masks.iter().flat_map(|m| m.rules()));
                    for r in rules.filter(|r| !r.definer) {
                        let from = key(dbname, &r.table);
                        for to in &r.reads {
                            edges
                                .entry(from.clone())
                                .or_default()
                                .insert(key(dbname, to));
                        }
                    }
                }
            }
        }
    }
    // Depth-first search for a cycle.
    fn visit(
        node: &(String, String),
        edges: &BTreeMap<(String, String), std::collections::BTreeSet<(String, String)>>,
        path: &mut Vec<(String, String)>,
        done: &mut HashSet<(String, String)>,
    ) -> Option<Vec<(String, String)>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path.get(i..).map(<[_]>::to_vec).unwrap_or_default();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = HashSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, &edges, &mut Vec::new(), &mut done) {
            let db = cycle.first().map(|c| c.0.clone()).unwrap_or_default();
            let names: Vec<String> = cycle.into_iter().map(|c| c.1).collect();
            return Err(cx.err(
                &["databases", db.as_str()],
                format!(
                    "row rules read each other's tables in a cycle ({}): each read is sandboxed by the other's rule, forever; read one of them `as: definer`",
                    names.join(" → ")
                ),
            ));
        }
    }
    Ok(())
}

/// Every function a row rule calls must be on its dialect's allow-list (as
/// amended by `functions:`), as in native SQL: the verifier does not look
/// inside the sandboxes it accepts, so the rules are held to it here.
fn rule_functions(
    cx: &Ctx,
    databases: &BTreeMap<String, Database>,
    groups: &BTreeMap<String, Group>,
    functions: &FunctionPolicy,
) -> Result<()> {
    use sqlparser::ast::visit_expressions;
    use std::ops::ControlFlow;
    for g in groups.values() {
        for (dbname, grant) in &g.data {
            let (DbGrant::Schemas(schemas), Some(db)) = (grant, databases.get(dbname)) else {
                continue;
            };
            for sg in schemas.values() {
                let SchemaGrant::Tables(tables) = sg else {
                    continue;
                };
                for tg in tables.values() {
                    let TableGrant::Sandbox(sb) = tg else {
                        continue;
                    };
                    let permissive: &[Arc<Rule>] = match &sb.kind {
                        SandboxKind::Rules(r) => r,
                        _ => &[],
                    };
                    let rules = permissive
                        .iter()
                        .chain(&sb.restrictive)
                        .chain(&sb.writes)
                        .chain(sb.masks.iter().flat_map(|m| m.rules()))
                        .flat_map(|r| std::iter::once(r).chain(r.check.as_ref()));
                    for r in rules {
                        let mut err = None;
                        let _ = visit_expressions(&r.expr, |e| {
                            if let Err(e) = crate::functions::check_expr(e, db.dialect, functions)
                                .and_then(|()| {
                                    crate::functions::pattern::check(e, db.dialect, &|_| None)
                                })
                            {
                                err = Some(e);
                                return ControlFlow::Break(());
                            }
                            ControlFlow::Continue(())
                        });
                        if let Some(e) = err {
                            return Err(cx.err(
                                &["groups", g.name.as_str(), "data", dbname.as_str()],
                                format!(
                                    "rule `{}` of group `{}` on {}.{}: {e}",
                                    r.name, g.name, r.table.schema, r.table.name
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether `value` fits a declared attribute type.
fn check_attribute_type(
    value: &AttributeValue,
    ty: AttributeType,
    attribute: &str,
) -> std::result::Result<(), String> {
    if let (AttributeValue::Many(_), false) = (value, ty.list) {
        return Err(format!(
            "attribute `{attribute}` is declared {ty}, not a list"
        ));
    }
    let what = || format!("attribute `{attribute}`");
    let target = crate::bind::Target {
        attribute,
        what: &what,
    };
    for v in value.values() {
        crate::bind::coerce(v, Some(ty.ty), &target).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The SHA-256 (hex) of the policy's text and the environment values it
/// read (length-prefixed, so no two inputs share an encoding): any edit, or
/// another hash key, gives another digest.
fn policy_digest(src: &str, env: &[(String, String)]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut put = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    put(b"sqlsandbox policy 1");
    put(src.as_bytes());
    for (var, value) in env {
        put(var.as_bytes());
        put(value.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    /// Every kind of mapping the policy model has, in block style, so that
    /// repeating any one line repeats a key of some map.
    const EVERY_MAP: &str = "\
version: 1
attributes:
  - tenant
  - role
databases:
  db:
    dialect: postgres
    default_schema: public
    fence: true
    tenant_roles: tenant
    impersonation:
      attribute: role
    routing:
      attribute: role
      destinations:
        eu: {}
        us:
          database: db
    tables:
      public.t:
        columns:
          id: integer
          tenant: integer
          other_id: integer
        combine: error
        foreign_keys:
          other_id: o.id
      public.o:
        columns:
          id: integer
questions:
  q:
    database: db
    collection: c
    sql: SELECT id, tenant, other_id FROM t WHERE tenant = {{tenant}}
collections:
  c:
    parent: p
  p: {}
groups:
  g:
    data:
      db:
        public:
          t:
            sandbox:
              question: q
              parameters:
                tenant:
                  attribute: tenant
                  type: integer
          o:
            sandbox:
              filters:
                - column: id
                  attribute: tenant
    native:
      db: true
    collections:
      c: view
users:
  u:
    groups:
      - g
    attributes:
      tenant: 1
      role: r
api_keys:
  k:
    group: g
    sha256: 0000000000000000000000000000000000000000000000000000000000000000
    attributes:
      tenant: 2
functions:
  deny:
    - pg_sleep
";

    #[test]
    fn a_repeated_key_in_any_map_is_refused() {
        super::compile(EVERY_MAP, "p.yaml").expect("the base policy loads");
        let lines: Vec<&str> = EVERY_MAP.lines().collect();
        let mut tried = 0;
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if !t.contains(':') {
                continue;
            }
            let mut doubled: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            if t.starts_with("- ") {
                // A list item's first key, repeated as a key of the item.
                doubled.insert(i + 1, line.replacen("- ", "  ", 1));
            } else {
                doubled.insert(i, line.to_string());
            }
            let src = doubled.join("\n");
            let r = super::compile(&src, "p.yaml");
            assert!(r.is_err(), "line {} repeated is accepted: {line}", i + 1);
            tried += 1;
        }
        assert!(tried > 50, "{tried}");
    }
}
