//! Checks requests and answers against JumpCloud's own Swagger 2.0 descriptions
//! (`JumpCloud.SDK.V1.json`, `JumpCloud.SDK.V2.json` in `/work/shared/specs/jumpcloud`).
//!
//! - [`Spec::operation`] finds an operation by method and path (template or concrete path);
//! - [`Operation::check_query`] / [`Operation::check_headers`] check what a client sent against
//!   the declared parameters, the `x-api-key` security scheme, the documented multi-tenant
//!   `x-org-id` header and the `produces` media types;
//! - [`Operation::check_response`] validates a 200 body against the response schema with a small
//!   validator for the Swagger 2.0 subset these files use: `$ref` into `definitions`, `allOf`,
//!   `type`, `enum`, `required`, `properties`, `additionalProperties`, `items`, `x-nullable`,
//!   `minimum`, `maxLength`. An object schema that lists `properties` and does not set
//!   `additionalProperties` is treated as closed: a property it does not list is an invention.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

/// Headers the HTTP layer itself adds, outside any API description.
const TRANSPORT_HEADERS: &[&str] = &["host", "content-length", "connection"];

/// The team's copy beside the repository: `<workspace>/../shared/specs/jumpcloud`.
pub fn shared_spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs/jumpcloud")
}

/// The copy vendored in this repository (see `specs/README.md`).
pub fn vendored_spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jumpcloud/specs")
}

/// Where the spec files are read from: the team's copy when it is beside the repository, else
/// the vendored one, so the checks run from any clone.
pub fn spec_dir() -> PathBuf {
    let shared = shared_spec_dir();
    if shared.join("JumpCloud.SDK.V2.json").exists() {
        shared
    } else {
        vendored_spec_dir()
    }
}

/// One API description with its base path.
pub struct Api {
    pub file: &'static str,
    pub doc: Value,
    /// `basePath` without the trailing slash (`/api`, `/api/v2`).
    pub base_path: String,
}

/// Both API descriptions.
pub struct Spec {
    pub apis: Vec<Api>,
}

impl Spec {
    /// Loads both files; panics, naming the path, when one is missing or unreadable.
    pub fn load() -> Self {
        let dir = spec_dir();
        let apis = ["JumpCloud.SDK.V2.json", "JumpCloud.SDK.V1.json"]
            .into_iter()
            .map(|file| {
                let path = dir.join(file);
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    panic!(
                        "the jumpcloud spec {} is missing or unreadable ({e}); the spec checks \
                         need ../shared/specs/jumpcloud or the vendored tests/jumpcloud/specs",
                        path.display()
                    )
                });
                let doc: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is not json: {e}", path.display()));
                assert_eq!(doc["swagger"], "2.0", "{file} is not swagger 2.0");
                let base_path = doc["basePath"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file} has no basePath"))
                    .trim_end_matches('/')
                    .to_owned();
                Api {
                    file,
                    doc,
                    base_path,
                }
            })
            .collect();
        Spec { apis }
    }

    /// The operation serving `method` on `path` (a template such as
    /// `/api/v2/usergroups/{group_id}/members`, or a concrete path). The longest matching base
    /// path wins, and among templates the one with the most literal segments.
    pub fn operation(&self, method: &str, path: &str) -> Result<Operation<'_>, String> {
        let method = method.to_ascii_lowercase();
        let mut apis: Vec<&Api> = self.apis.iter().collect();
        apis.sort_by_key(|api| std::cmp::Reverse(api.base_path.len()));
        for api in apis {
            let Some(rest) = path.strip_prefix(&api.base_path) else {
                continue;
            };
            let Some(paths) = api.doc["paths"].as_object() else {
                continue;
            };
            let wanted: Vec<&str> = rest.trim_matches('/').split('/').collect();
            let best = paths
                .iter()
                .filter_map(|(template, item)| {
                    let segments: Vec<&str> = template.trim_matches('/').split('/').collect();
                    if segments.len() != wanted.len() {
                        return None;
                    }
                    let mut literal = 0;
                    for (t, w) in segments.iter().zip(&wanted) {
                        if t == w {
                            literal += 1;
                        } else if !(t.starts_with('{') && t.ends_with('}')) {
                            return None;
                        }
                    }
                    Some((literal, template, item))
                })
                .max_by_key(|(literal, _, _)| *literal);
            if let Some((_, template, item)) = best {
                let op = item.get(&method).ok_or_else(|| {
                    format!(
                        "{} {path}: {} declares {template} but not for {method}",
                        method.to_uppercase(),
                        api.file
                    )
                })?;
                return Ok(Operation {
                    api,
                    template: template.clone(),
                    method,
                    path_item: item,
                    op,
                });
            }
        }
        Err(format!(
            "{} {path}: no jumpcloud spec declares this path",
            method.to_uppercase()
        ))
    }
}

/// One operation of one API.
pub struct Operation<'a> {
    pub api: &'a Api,
    /// The spec's path template, relative to the base path.
    pub template: String,
    pub method: String,
    path_item: &'a Value,
    op: &'a Value,
}

impl Operation<'_> {
    pub fn id(&self) -> &str {
        self.op["operationId"].as_str().unwrap_or("?")
    }

    fn name(&self) -> String {
        format!(
            "{} {}{} ({}, {})",
            self.method.to_uppercase(),
            self.api.base_path,
            self.template,
            self.id(),
            self.api.file
        )
    }

    /// Path-level then operation-level parameters (the latter override), `$ref`s resolved.
    pub fn parameters(&self) -> Vec<&Value> {
        let mut by_key: BTreeMap<(String, String), &Value> = BTreeMap::new();
        for list in [&self.path_item["parameters"], &self.op["parameters"]] {
            for p in list.as_array().into_iter().flatten() {
                let p = self.resolve(p);
                let key = (
                    p["in"].as_str().unwrap_or_default().to_owned(),
                    p["name"].as_str().unwrap_or_default().to_owned(),
                );
                by_key.insert(key, p);
            }
        }
        by_key.into_values().collect()
    }

    fn declared(&self, location: &str, name: &str) -> Option<&Value> {
        self.parameters().into_iter().find(|p| {
            p["in"] == location
                && p["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    fn resolve<'v>(&'v self, value: &'v Value) -> &'v Value {
        resolve(&self.api.doc, value)
    }

    /// Every sent query parameter is declared `in: query` with a value of its type, no
    /// parameter is repeated unless declared `collectionFormat: multi`, and every required
    /// query parameter is sent.
    pub fn check_query(&self, query: &[(String, String)]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, value) in query {
            *seen.entry(name.as_str()).or_default() += 1;
            let Some(p) = self.declared("query", name) else {
                problems.push(format!(
                    "{}: query parameter {name:?} is not declared",
                    self.name()
                ));
                continue;
            };
            if let Err(e) = check_parameter_value(p, value) {
                problems.push(format!("{}: query {name}={value:?}: {e}", self.name()));
            }
        }
        for (name, count) in seen {
            let multi = self
                .declared("query", name)
                .is_some_and(|p| p["collectionFormat"] == "multi");
            if count > 1 && !multi {
                problems.push(format!(
                    "{}: query parameter {name:?} sent {count} times",
                    self.name()
                ));
            }
        }
        for p in self.parameters() {
            if p["in"] == "query" && p["required"] == true {
                let name = p["name"].as_str().unwrap_or_default();
                if !query.iter().any(|(k, _)| k == name) {
                    problems.push(format!(
                        "{}: required query parameter {name:?} missing",
                        self.name()
                    ));
                }
            }
        }
        problems
    }

    /// Every sent header is declared: as a header parameter, as the `x-api-key` security
    /// scheme this operation requires, as the multi-tenant `x-org-id` the API's overview and
    /// this operation's code samples document, or as `Accept` with a media type the operation
    /// produces. Required header parameters must be sent.
    pub fn check_headers(&self, headers: &[(String, String)]) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            if TRANSPORT_HEADERS.contains(&name.as_str()) {
                continue;
            }
            let ok = if name == "accept" {
                let produces = self.produces();
                let wanted: Vec<&str> = value.split(',').map(|m| m.trim()).collect();
                let fine = wanted.iter().all(|m| produces.iter().any(|p| p == m));
                if !fine {
                    problems.push(format!(
                        "{}: accept {value:?} is not among produces {produces:?}",
                        self.name()
                    ));
                }
                true
            } else if self.security_header(&name).is_some() {
                true
            } else if name == "x-org-id" {
                self.documents_org_id()
            } else {
                self.declared("header", &name).is_some()
            };
            if !ok {
                problems.push(format!("{}: header {name:?} is not declared", self.name()));
            }
        }
        for p in self.parameters() {
            if p["in"] == "header" && p["required"] == true {
                let name = p["name"].as_str().unwrap_or_default();
                if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                    problems.push(format!("{}: required header {name:?} missing", self.name()));
                }
            }
        }
        problems
    }

    fn produces(&self) -> Vec<String> {
        let list = if self.op.get("produces").is_some() {
            &self.op["produces"]
        } else {
            &self.api.doc["produces"]
        };
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    /// The security scheme named `header` (an `apiKey` in a header) that this operation
    /// requires, if any.
    pub fn security_header(&self, header: &str) -> Option<&str> {
        let requirements = self
            .op
            .get("security")
            .or_else(|| self.api.doc.get("security"))?;
        let schemes = self.api.doc["securityDefinitions"].as_object()?;
        requirements
            .as_array()?
            .iter()
            .filter_map(|r| r.as_object())
            .flat_map(|r| r.keys())
            .find(|scheme| {
                let def = &schemes[scheme.as_str()];
                def["type"] == "apiKey"
                    && def["in"] == "header"
                    && def["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(header))
            })
            .map(String::as_str)
    }

    /// `x-org-id` is not a declared parameter: the overview documents it ("Multi-Tenant
    /// Portal Headers") and every operation's generated code samples send it.
    pub fn documents_org_id(&self) -> bool {
        let overview = self.api.doc["info"]["description"]
            .as_str()
            .unwrap_or_default();
        let samples = self.op["x-codeSamples"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["source"].as_str());
        overview.contains("Multi-Tenant Portal Headers")
            && overview.contains("`x-org-id`")
            && samples
                .into_iter()
                .any(|s| s.contains("--header 'x-org-id:"))
    }

    /// The schema of the 200 answer.
    pub fn response_schema(&self) -> Result<&Value, String> {
        let schema = &self.op["responses"]["200"]["schema"];
        if schema.is_null() {
            Err(format!("{}: no 200 response schema", self.name()))
        } else {
            Ok(schema)
        }
    }

    /// Property names of one listed item in the 200 answer (`results[]` for v1 lists, the
    /// array's items for v2 lists), merged across `allOf`.
    pub fn item_properties(&self) -> BTreeSet<String> {
        let doc = &self.api.doc;
        let Ok(schema) = self.response_schema() else {
            return BTreeSet::new();
        };
        let schema = resolve(doc, schema);
        let list = if schema["type"] == "array" {
            schema
        } else {
            resolve(doc, &schema["properties"]["results"])
        };
        let mut item = Shape::default();
        shape(doc, &list["items"], &mut item);
        item.properties.keys().map(|k| k.to_string()).collect()
    }

    /// `fields` and `sort` name properties the listed items have (v1 separates names with
    /// spaces, v2 with commas; `-` marks a descending sort).
    pub fn check_field_names(&self, query: &[(String, String)]) -> Vec<String> {
        let known = self.item_properties();
        let mut problems = Vec::new();
        for (name, value) in query {
            if name != "fields" && name != "sort" {
                continue;
            }
            for field in value.split([' ', ',']).filter(|f| !f.is_empty()) {
                let field = field.trim_start_matches('-');
                if !known.contains(field) {
                    problems.push(format!(
                        "{}: {name} names {field:?}, which the answer's items do not have",
                        self.name()
                    ));
                }
            }
        }
        problems
    }

    /// Validates a 200 body; returns every problem with its JSON path.
    pub fn check_response(&self, body: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        match self.response_schema() {
            Ok(schema) => validate(&self.api.doc, schema, body, "$", &mut problems),
            Err(e) => problems.push(e),
        }
        problems
            .into_iter()
            .map(|p| format!("{}: {p}", self.name()))
            .collect()
    }
}

fn resolve<'v>(doc: &'v Value, value: &'v Value) -> &'v Value {
    let mut current = value;
    for _ in 0..32 {
        let Some(reference) = current.get("$ref").and_then(Value::as_str) else {
            return current;
        };
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {reference} is outside the subset"));
        let pointer = pointer.replace("~1", "/").replace("~0", "~");
        current = doc
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("$ref {reference} does not resolve"));
    }
    panic!("$ref chain too long at {value}")
}

fn check_parameter_value(p: &Value, value: &str) -> Result<(), String> {
    let check_one = |schema: &Value, v: &str| -> Result<(), String> {
        match schema["type"].as_str() {
            Some("integer") => {
                let n: i64 = v.parse().map_err(|_| "not an integer".to_owned())?;
                if let Some(min) = schema["minimum"].as_i64() {
                    if n < min {
                        return Err(format!("below minimum {min}"));
                    }
                }
            }
            Some("boolean") if v != "true" && v != "false" => {
                return Err("not a boolean".to_owned())
            }
            _ => {}
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.iter().any(|a| a.as_str() == Some(v)) {
                return Err(format!("not one of {allowed:?}"));
            }
        }
        Ok(())
    };
    if p["type"] == "array" {
        let items = &p["items"];
        let parts: Vec<&str> = match p["collectionFormat"].as_str().unwrap_or("csv") {
            "multi" => vec![value],
            "ssv" => value.split(' ').collect(),
            "tsv" => value.split('\t').collect(),
            "pipes" => value.split('|').collect(),
            _ => value.split(',').collect(),
        };
        parts
            .into_iter()
            .try_for_each(|part| check_one(items, part))
    } else {
        check_one(p, value)
    }
}

/// Properties, required names and openness of an object schema, merged across `allOf`.
#[derive(Default)]
struct Shape<'v> {
    properties: BTreeMap<&'v str, &'v Value>,
    required: BTreeSet<&'v str>,
    /// `additionalProperties`: `None` closed, `Some(None)` anything, `Some(Some(s))` schema.
    extra: Option<Option<&'v Value>>,
    lists_properties: bool,
}

fn shape<'v>(doc: &'v Value, schema: &'v Value, out: &mut Shape<'v>) {
    let schema = resolve(doc, schema);
    if let Some(props) = schema["properties"].as_object() {
        out.lists_properties = true;
        for (name, s) in props {
            out.properties.insert(name.as_str(), s);
        }
    }
    for name in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = name.as_str() {
            out.required.insert(name);
        }
    }
    match &schema["additionalProperties"] {
        Value::Bool(true) => out.extra = Some(None),
        extra @ Value::Object(_) => out.extra = Some(Some(extra)),
        _ => {}
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        shape(doc, part, out);
    }
}

/// Validates `value` against `schema` (resolved within `doc`), pushing problems with paths.
pub fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if value.is_null() {
        if schema["x-nullable"] != true && schema.get("type").is_some() {
            problems.push(format!("{at}: null where the schema does not allow it"));
        }
        return;
    }
    let kind = schema["type"].as_str().or_else(|| {
        // allOf parts may carry the type.
        schema["allOf"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|p| resolve(doc, p)["type"].as_str())
    });
    let type_ok = match kind {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => {
            problems.push(format!("{at}: schema type {other:?} is outside the subset"));
            true
        }
    };
    if !type_ok {
        problems.push(format!(
            "{at}: expected {}, found {value}",
            kind.unwrap_or("?")
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if n < min {
            problems.push(format!("{at}: {n} is below the minimum {min}"));
        }
    }
    if let (Some(max), Some(s)) = (schema["maxLength"].as_u64(), value.as_str()) {
        if s.chars().count() as u64 > max {
            problems.push(format!("{at}: longer than maxLength {max}"));
        }
    }
    if let Some(items) = value.as_array() {
        let item_schema = &schema["items"];
        if !item_schema.is_null() {
            for (i, item) in items.iter().enumerate() {
                validate(doc, item_schema, item, &format!("{at}[{i}]"), problems);
            }
        }
    }
    if let Some(object) = value.as_object() {
        let mut s = Shape::default();
        shape(doc, schema, &mut s);
        for name in &s.required {
            if !object.contains_key(*name) {
                problems.push(format!("{at}: required property {name:?} missing"));
            }
        }
        for (name, v) in object {
            let here = format!("{at}.{name}");
            match (s.properties.get(name.as_str()), s.extra) {
                (Some(prop), _) => validate(doc, prop, v, &here, problems),
                (None, Some(Some(extra))) => validate(doc, extra, v, &here, problems),
                (None, Some(None)) => {}
                (None, None) if !s.lists_properties => {}
                (None, None) => problems.push(format!(
                    "{here}: property not in the schema (invented by the fixture)"
                )),
            }
        }
    }
}
