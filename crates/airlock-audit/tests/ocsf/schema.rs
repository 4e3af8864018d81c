//! A validator of events against the OCSF 1.8.0 schema, for tests.
//!
//! [`Schema::load`] reads the copy of the schema vendored in `tests/ocsf/schema-1.8.0/` (see its
//! README.md) and resolves every event class and object in it the way the OCSF server compiles
//! the schema:
//!
//! - `"$include"` in a file's `attributes` (a path or a list of paths, relative to the schema
//!   root) merges the included file's attributes *under* the file's own (the file wins; of two
//!   included files the first listed wins). Attributes of an included *profile* file
//!   (`"meta": "profile"`) are marked `"profile": "<name>"`, with the profile's `annotations`
//!   merged under them. A class or object that lists the same attribute with `"profile": null`
//!   takes it out of the profile (e.g. `actor` in the IAM category, `api` in API Activity).
//!   An attribute may also carry its own `"profile"` (e.g. `cloud` ones in some objects).
//!   `"$include"` inside one attribute (an enum file) is merged under that attribute.
//! - `"extends"` (a class to its category file to `base_event`, an object to its parent
//!   object) merges the parent's attributes under the child's; an attribute set to `null` is
//!   removed; `constraints` and other top-level keys of the child replace the parent's.
//! - Each attribute is then merged over its `dictionary.json` entry. Merging is deep, as in the
//!   server: maps merge key by key (the later wins), so a class or object can change an
//!   attribute's `requirement`, `type`, `description`... and an `enum` of a class or object is
//!   *added* to the dictionary's (Account Change's `activity_id` accepts 1..=12 and the
//!   dictionary's 0 Unknown and 99 Other).
//! - As the server's synthetic `datetime` profile does, every attribute whose dictionary type is
//!   `timestamp_t` gets an optional `<name>_dt` sibling of type `datetime_t`.
//! - A missing `requirement` is `optional`.
//!
//! [`Schema::validate`] then checks an event against its class (found by `class_uid`), see
//! there. Not checked: the regular expressions of string types (`email_t`, `uuid_t`, `ip_t`,
//! `datetime_t`...; only their JSON type and `max_len`), deprecations, the `observables` name
//! paths and whether a sibling string (`activity_name`...) is its `_id`'s caption.
//!
//! Include it in a test binary with `#[path = "ocsf/schema.rs"] mod schema;`.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The vendored copy of the schema (see its README.md).
pub fn vendored_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ocsf/schema-1.8.0")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Requirement {
    Required,
    Recommended,
    Optional,
}

/// One attribute of a class or object, resolved.
#[derive(Clone, Debug)]
struct Attribute {
    /// A dictionary type (`string_t`, `timestamp_t`...) or, when `object`, an object's name.
    type_name: String,
    object: bool,
    is_array: bool,
    requirement: Requirement,
    /// The keys of the attribute's `enum`, when it has one.
    enum_keys: Option<BTreeSet<String>>,
    /// The profile the attribute belongs to, if any.
    profile: Option<String>,
}

#[derive(Clone, Debug)]
enum Constraint {
    AtLeastOne(Vec<String>),
    JustOne(Vec<String>),
}

/// A class or an object, resolved.
#[derive(Debug)]
struct Item {
    /// `class` or `object`.
    kind: &'static str,
    name: String,
    attributes: BTreeMap<String, Attribute>,
    constraints: Vec<Constraint>,
}

#[derive(Debug)]
struct Class {
    item: Item,
    caption: String,
    category_uid: i64,
}

/// A data type of `dictionary.json`'s `types`.
#[derive(Debug)]
struct DataType {
    /// The type it refines (`email_t` -> `string_t`, `timestamp_t` -> `long_t`).
    base: Option<String>,
    range: Option<(i64, i64)>,
    max_len: Option<usize>,
    values: Option<Vec<Value>>,
}

/// The OCSF schema: its event classes by `class_uid`, objects, data types and profiles.
pub struct Schema {
    version: String,
    types: BTreeMap<String, DataType>,
    classes: BTreeMap<i64, Class>,
    objects: BTreeMap<String, Item>,
    profiles: BTreeSet<String>,
}

impl Schema {
    /// Loads the vendored copy; panics, naming the file, when a file is missing or malformed
    /// (including an object that an attribute refers to but the copy lacks).
    pub fn load() -> Schema {
        Loader::new(&vendored_dir()).load()
    }

    /// Every problem of `event` as an instance of its class (found by `class_uid`), one line
    /// each naming the JSON path (`actor.user.type_id`, `metadata.profiles[0]`; `(event)` for
    /// the event itself); empty when the event is valid. Checked:
    ///
    /// - required attributes of the class and, recursively, of every object value present
    ///   (an attribute of a profile counts as required only when `metadata.profiles` declares
    ///   that profile; otherwise it is optional). `null` counts as absent.
    /// - JSON types: `string_t` and its refinements are strings, `integer_t` 32-bit integers,
    ///   `long_t` and `timestamp_t` (milliseconds) 64-bit integers, `float_t` numbers,
    ///   `boolean_t` booleans, `json_t` anything, an object type a JSON object checked against
    ///   that object; `is_array` attributes arrays whose items are checked. Also the types'
    ///   `range` (`port_t`), `max_len` (`ip_t`, `mac_t`, `subnet_t`) and `values`.
    /// - enum attributes: the value (integer, or string for e.g. `http_method`) is a key of
    ///   the enum.
    /// - attributes the class or object does not define (an object without attributes,
    ///   `object` as used by `unmapped`, holds anything).
    /// - the class's and objects' `constraints` (`at_least_one`, `just_one`).
    /// - `category_uid` is the class's category, `type_uid` is class_uid * 100 + activity_id,
    ///   every `metadata.profiles` entry is a profile of the schema, `metadata.version` is the
    ///   schema's version.
    pub fn validate(&self, event: &Value) -> Vec<String> {
        let Some(map) = event.as_object() else {
            return vec![format!("(event): {} is not a JSON object", show(event))];
        };
        let class = match map.get("class_uid") {
            None | Some(Value::Null) => {
                return vec!["class_uid: required attribute is missing".to_owned()];
            }
            Some(value) => match value.as_i64() {
                None => {
                    return vec![format!(
                        "class_uid: {} is not of type integer_t",
                        show(value)
                    )]
                }
                Some(uid) => match self.classes.get(&uid) {
                    Some(class) => class,
                    None => {
                        let known: Vec<String> =
                            self.classes.keys().map(ToString::to_string).collect();
                        return vec![format!(
                            "class_uid: {uid} is not a class of the vendored OCSF {} schema \
                             (known: {})",
                            self.version,
                            known.join(", ")
                        )];
                    }
                },
            },
        };
        let declared = map
            .get("metadata")
            .and_then(|metadata| metadata.get("profiles"))
            .and_then(Value::as_array)
            .map(|profiles| {
                profiles
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut check = Check {
            schema: self,
            profiles: declared,
            problems: Vec::new(),
        };
        check.item(&class.item, map, "");
        let mut problems = check.problems;

        let uid = |name: &str| map.get(name).and_then(Value::as_i64);
        if let Some(category_uid) = uid("category_uid") {
            if category_uid != class.category_uid {
                problems.push(format!(
                    "category_uid: {category_uid} is not {}, the category of class {} ({})",
                    class.category_uid,
                    uid("class_uid").unwrap_or_default(),
                    class.caption
                ));
            }
        }
        if let (Some(class_uid), Some(activity_id), Some(type_uid)) =
            (uid("class_uid"), uid("activity_id"), uid("type_uid"))
        {
            let expected = class_uid * 100 + activity_id;
            if type_uid != expected {
                problems.push(format!(
                    "type_uid: {type_uid} is not class_uid * 100 + activity_id = {expected}"
                ));
            }
        }
        let metadata = map.get("metadata");
        if let Some(profiles) = metadata
            .and_then(|m| m.get("profiles"))
            .and_then(Value::as_array)
        {
            for (index, profile) in profiles.iter().enumerate() {
                if let Some(name) = profile.as_str() {
                    if !self.profiles.contains(name) {
                        problems.push(format!(
                            "metadata.profiles[{index}]: {} is not a profile of OCSF {}",
                            show(profile),
                            self.version
                        ));
                    }
                }
            }
        }
        if let Some(version) = metadata.and_then(|m| m.get("version")) {
            if version.is_string() && version.as_str() != Some(self.version.as_str()) {
                problems.push(format!(
                    "metadata.version: {} is not {}, the version of this schema",
                    show(version),
                    self.version
                ));
            }
        }
        problems
    }

    /// What an event of class `class_uid` must carry when it declares no profile: the path of
    /// every required attribute, recursively into required objects (`name[]` for an array),
    /// and, as `path: at least one of a, b` / `path: exactly one of a, b`, the constraints of
    /// the class (path `(event)`) and of those objects. Panics on an unknown class.
    pub fn requirements(&self, class_uid: i64) -> Vec<String> {
        let class = self
            .classes
            .get(&class_uid)
            .unwrap_or_else(|| panic!("no class {class_uid} in the vendored OCSF schema"));
        let mut out = Vec::new();
        self.collect_requirements(&class.item, "", &mut out, &mut Vec::new());
        out
    }

    fn collect_requirements(
        &self,
        item: &Item,
        path: &str,
        out: &mut Vec<String>,
        stack: &mut Vec<String>,
    ) {
        let here = if path.is_empty() { "(event)" } else { path };
        for constraint in &item.constraints {
            out.push(match constraint {
                Constraint::AtLeastOne(names) => {
                    format!("{here}: at least one of {}", names.join(", "))
                }
                Constraint::JustOne(names) => {
                    format!("{here}: exactly one of {}", names.join(", "))
                }
            });
        }
        for (name, attribute) in &item.attributes {
            if attribute.requirement != Requirement::Required || attribute.profile.is_some() {
                continue;
            }
            let mut child = join(path, name);
            if attribute.is_array {
                child.push_str("[]");
            }
            out.push(child.clone());
            if attribute.object && !stack.contains(&attribute.type_name) {
                stack.push(attribute.type_name.clone());
                self.collect_requirements(&self.objects[&attribute.type_name], &child, out, stack);
                stack.pop();
            }
        }
    }

    /// The primitive type under a data type (`email_t` -> `string_t`).
    fn primitive<'a>(&'a self, mut type_name: &'a str) -> &'a str {
        while let Some(base) = self.types.get(type_name).and_then(|t| t.base.as_deref()) {
            type_name = base;
        }
        type_name
    }
}

/// One validation run: the event's declared profiles and the problems found so far.
struct Check<'a> {
    schema: &'a Schema,
    profiles: BTreeSet<String>,
    problems: Vec<String>,
}

impl Check<'_> {
    fn required(&self, attribute: &Attribute) -> bool {
        attribute.requirement == Requirement::Required
            && attribute
                .profile
                .as_ref()
                .is_none_or(|profile| self.profiles.contains(profile))
    }

    /// Checks `map`, found at `path` (empty for the event), as an instance of `item`.
    fn item(&mut self, item: &Item, map: &Map<String, Value>, path: &str) {
        let root = path.is_empty();
        for (name, attribute) in &item.attributes {
            let child = join(path, name);
            match map.get(name) {
                None | Some(Value::Null) => {
                    if self.required(attribute) {
                        self.problems
                            .push(format!("{child}: required attribute is missing"));
                    }
                }
                Some(value) => {
                    // class_uid, category_uid and type_uid are checked by `validate` itself.
                    let special =
                        root && matches!(name.as_str(), "class_uid" | "category_uid" | "type_uid");
                    self.attribute(attribute, value, &child, !special);
                }
            }
        }
        if !item.attributes.is_empty() {
            for key in map.keys() {
                if !item.attributes.contains_key(key) {
                    self.problems.push(format!(
                        "{}: not defined by {} {}",
                        join(path, key),
                        item.kind,
                        item.name
                    ));
                }
            }
        }
        let here = if root { "(event)" } else { path };
        for constraint in &item.constraints {
            let (names, want_one) = match constraint {
                Constraint::AtLeastOne(names) => (names, false),
                Constraint::JustOne(names) => (names, true),
            };
            let present = names
                .iter()
                .filter(|name| map.get(*name).is_some_and(|v| !v.is_null()))
                .count();
            if want_one && present != 1 {
                self.problems.push(format!(
                    "{here}: has {present} of {}, {} {} needs exactly one",
                    names.join(", "),
                    item.kind,
                    item.name
                ));
            } else if !want_one && present == 0 {
                self.problems.push(format!(
                    "{here}: has none of {}, {} {} needs at least one",
                    names.join(", "),
                    item.kind,
                    item.name
                ));
            }
        }
    }

    fn attribute(&mut self, attribute: &Attribute, value: &Value, path: &str, check_enum: bool) {
        if !attribute.is_array {
            self.value(attribute, value, path, check_enum);
            return;
        }
        match value.as_array() {
            Some(items) => {
                for (index, item) in items.iter().enumerate() {
                    self.value(attribute, item, &format!("{path}[{index}]"), check_enum);
                }
            }
            None => self.problems.push(format!(
                "{path}: {} is not an array (of {})",
                show(value),
                attribute.type_name
            )),
        }
    }

    fn value(&mut self, attribute: &Attribute, value: &Value, path: &str, check_enum: bool) {
        let schema = self.schema;
        let type_name = attribute.type_name.as_str();
        if attribute.object {
            match value.as_object() {
                Some(map) => self.item(&schema.objects[type_name], map, path),
                None => self.problems.push(format!(
                    "{path}: {} is not an object ({type_name})",
                    show(value)
                )),
            }
            return;
        }
        let primitive = schema.primitive(type_name);
        let type_ok = match primitive {
            "string_t" => value.is_string(),
            "integer_t" => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "long_t" => value.as_i64().is_some(),
            "float_t" => value.is_number(),
            "boolean_t" => value.is_boolean(),
            "json_t" => true,
            other => {
                panic!("OCSF schema: {path} has type {type_name} of unknown primitive {other}")
            }
        };
        if !type_ok {
            let refined = if primitive == type_name {
                String::new()
            } else {
                format!(" ({primitive})")
            };
            self.problems.push(format!(
                "{path}: {} is not of type {type_name}{refined}",
                show(value)
            ));
            return;
        }
        // The constraints of the type and of the types it refines.
        let mut current = Some(type_name);
        while let Some(name) = current {
            let Some(data_type) = schema.types.get(name) else {
                break;
            };
            // (The types with a range, port_t, are integers.)
            if let (Some((min, max)), Some(n)) = (data_type.range, value.as_i64()) {
                if !(min..=max).contains(&n) {
                    self.problems.push(format!(
                        "{path}: {} is outside {name}'s range {min}..={max}",
                        show(value)
                    ));
                }
            }
            if let (Some(max_len), Some(s)) = (data_type.max_len, value.as_str()) {
                if s.chars().count() > max_len {
                    self.problems.push(format!(
                        "{path}: {} is longer than {name}'s {max_len} characters",
                        show(value)
                    ));
                }
            }
            if let Some(values) = &data_type.values {
                if !values.contains(value) {
                    self.problems.push(format!(
                        "{path}: {} is not one of {name}'s values",
                        show(value)
                    ));
                }
            }
            current = data_type.base.as_deref();
        }
        if let (true, Some(keys)) = (check_enum, &attribute.enum_keys) {
            let key = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !keys.contains(&key) {
                let mut keys: Vec<&String> = keys.iter().collect();
                keys.sort_by_key(|k| {
                    (k.parse::<i64>().map_or(1, |_| 0), k.parse::<i64>().ok(), *k)
                });
                let keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
                self.problems.push(format!(
                    "{path}: {} is not one of {}",
                    show(value),
                    keys.join(", ")
                ));
            }
        }
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// A value as compact JSON, cut after 80 characters.
fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(80).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The OCSF server's merge: maps merge key by key, recursively; otherwise the right side wins
/// (a `null` on the right included), except that a whole `null` right side keeps the left, and
/// an empty map on either side yields the other.
fn deep_merge(left: &Value, right: &Value) -> Value {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            let mut out = l.clone();
            for (key, rv) in r {
                let merged = match (out.get(key), rv) {
                    (Some(lv @ Value::Object(lm)), Value::Object(rm)) => {
                        if lm.is_empty() {
                            rv.clone()
                        } else if rm.is_empty() {
                            lv.clone()
                        } else {
                            deep_merge(lv, rv)
                        }
                    }
                    _ => rv.clone(),
                };
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (l, Value::Null) => l.clone(),
        (_, r) => r.clone(),
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "the OCSF schema file {} is missing or unreadable ({e}); the vendored copy is \
             tests/ocsf/schema-1.8.0 (see its README.md)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn attributes_of(data: &Value) -> Map<String, Value> {
    data.get("attributes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The `.json` files directly in `dir` (`recursive`: also below it).
fn json_files(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list the OCSF schema dir {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            if recursive {
                json_files(&path, true, out);
            }
        } else if path.extension().is_some_and(|ext| ext == "json") {
            out.push(path);
        }
    }
    out.sort();
}

struct Loader {
    dir: PathBuf,
    dictionary: Map<String, Value>,
    types: BTreeMap<String, DataType>,
    /// Event class and category files by name, their `$include`s resolved.
    events: BTreeMap<String, Value>,
    /// Object files by name, their `$include`s resolved.
    objects: BTreeMap<String, Value>,
}

impl Loader {
    fn new(dir: &Path) -> Loader {
        let dictionary_file = read_json(&dir.join("dictionary.json"));
        let dictionary = attributes_of(&dictionary_file);
        let types = dictionary_file
            .pointer("/types/attributes")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("dictionary.json has no types"))
            .iter()
            .map(|(name, t)| {
                let range = t.get("range").and_then(Value::as_array).map(|r| {
                    let bound = |i: usize| {
                        r.get(i)
                            .and_then(Value::as_i64)
                            .unwrap_or_else(|| panic!("dictionary.json: bad range of {name}"))
                    };
                    (bound(0), bound(1))
                });
                let data_type = DataType {
                    base: t.get("type").and_then(Value::as_str).map(str::to_owned),
                    range,
                    max_len: t
                        .get("max_len")
                        .and_then(Value::as_u64)
                        .and_then(|n| usize::try_from(n).ok()),
                    values: t.get("values").and_then(Value::as_array).cloned(),
                };
                (name.clone(), data_type)
            })
            .collect();
        let mut loader = Loader {
            dir: dir.to_owned(),
            dictionary,
            types,
            events: BTreeMap::new(),
            objects: BTreeMap::new(),
        };
        for (subdir, recursive) in [("events", true), ("objects", false)] {
            let mut files = Vec::new();
            json_files(&dir.join(subdir), recursive, &mut files);
            for file in files {
                let data = loader.resolve_includes(read_json(&file));
                let name = data
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{} has no name", file.display()))
                    .to_owned();
                let table = if subdir == "events" {
                    &mut loader.events
                } else {
                    &mut loader.objects
                };
                table.insert(name, data);
            }
        }
        loader
    }

    fn load(self) -> Schema {
        let categories: BTreeMap<String, i64> =
            attributes_of(&read_json(&self.dir.join("categories.json")))
                .iter()
                .map(|(name, category)| {
                    let uid = category
                        .get("uid")
                        .and_then(Value::as_i64)
                        .unwrap_or_else(|| panic!("categories.json: {name} has no uid"));
                    (name.clone(), uid)
                })
                .collect();
        let version = read_json(&self.dir.join("version.json"))
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("version.json has no version"))
            .to_owned();

        let mut classes = BTreeMap::new();
        for name in self.events.keys() {
            let data = self.resolve_extends(&self.events, name, &mut Vec::new());
            let uid = data.get("uid").and_then(Value::as_i64);
            if uid.is_none() && name != "base_event" {
                continue; // a category file
            }
            let category = data
                .get("category")
                .and_then(Value::as_str)
                .unwrap_or("other");
            let category_uid = categories.get(category).copied().unwrap_or(0);
            let class_uid = category_uid * 1000 + uid.unwrap_or(0);
            let caption = data
                .get("caption")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_owned();
            let class = Class {
                item: self.finish("class", name, &data),
                caption,
                category_uid,
            };
            if let Some(previous) = classes.insert(class_uid, class) {
                panic!(
                    "classes {} and {name} have the same uid {class_uid}",
                    previous.item.name
                );
            }
        }
        let objects: BTreeMap<String, Item> = self
            .objects
            .keys()
            .map(|name| {
                let data = self.resolve_extends(&self.objects, name, &mut Vec::new());
                (name.clone(), self.finish("object", name, &data))
            })
            .collect();

        // Every object an attribute refers to must be in the copy.
        let items = classes
            .values()
            .map(|class| &class.item)
            .chain(objects.values());
        for item in items {
            for (name, attribute) in &item.attributes {
                assert!(
                    !attribute.object || objects.contains_key(&attribute.type_name),
                    "objects/{}.json, the type of {} {}'s attribute {name}, is missing from the \
                     vendored OCSF schema (tests/ocsf/vendor-schema.py copies it)",
                    attribute.type_name,
                    item.kind,
                    item.name
                );
            }
        }

        let mut profile_files = Vec::new();
        json_files(&self.dir.join("profiles"), false, &mut profile_files);
        let profiles = profile_files
            .iter()
            .map(|file| {
                read_json(file)
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{} has no name", file.display()))
                    .to_owned()
            })
            .collect();

        Schema {
            version,
            types: self.types,
            classes,
            objects,
            profiles,
        }
    }

    /// Merges the files a class, object or attribute `$include`s under it.
    fn resolve_includes(&self, mut data: Value) -> Value {
        let mut attributes = attributes_of(&data);
        if let Some(include) = attributes.remove("$include") {
            let files: Vec<&str> = match &include {
                Value::String(file) => vec![file.as_str()],
                Value::Array(files) => files.iter().filter_map(Value::as_str).collect(),
                other => panic!("bad $include {other}"),
            };
            for file in files {
                let included = attributes_of(&self.read_included(file));
                attributes = match deep_merge(&Value::Object(included), &Value::Object(attributes))
                {
                    Value::Object(map) => map,
                    _ => unreachable!("merging two maps gives a map"),
                };
            }
        }
        for attribute in attributes.values_mut() {
            let Some(file) = attribute
                .get("$include")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            if let Some(map) = attribute.as_object_mut() {
                map.remove("$include");
            }
            *attribute = deep_merge(&self.read_included(&file), attribute);
        }
        if let Some(map) = data.as_object_mut() {
            map.insert("attributes".to_owned(), Value::Object(attributes));
        }
        data
    }

    /// An included file; a profile's attributes are marked with the profile's name, and its
    /// `annotations` are merged under each attribute.
    fn read_included(&self, file: &str) -> Value {
        let mut data = read_json(&self.dir.join(file));
        let profile = (data.get("meta").and_then(Value::as_str) == Some("profile"))
            .then(|| data.get("name").and_then(Value::as_str).map(str::to_owned))
            .flatten();
        let annotations = data
            .get("annotations")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()));
        let mut attributes = attributes_of(&data);
        for attribute in attributes.values_mut() {
            if let (Some(profile), Some(map)) = (&profile, attribute.as_object_mut()) {
                map.insert("profile".to_owned(), Value::String(profile.clone()));
            }
            *attribute = deep_merge(&annotations, attribute);
        }
        if let Some(map) = data.as_object_mut() {
            map.insert("attributes".to_owned(), Value::Object(attributes));
        }
        data
    }

    /// `name` with the chain of what it `extends` merged under it.
    fn resolve_extends(
        &self,
        table: &BTreeMap<String, Value>,
        name: &str,
        stack: &mut Vec<String>,
    ) -> Value {
        assert!(
            !stack.iter().any(|n| n == name),
            "OCSF schema: {name} extends itself"
        );
        let item = table
            .get(name)
            .unwrap_or_else(|| {
                panic!(
                    "{name} (extended by {stack:?}) is missing from the vendored OCSF schema \
                     (tests/ocsf/vendor-schema.py copies it)"
                )
            })
            .clone();
        let Some(parent) = item.get("extends").and_then(Value::as_str) else {
            return item;
        };
        stack.push(name.to_owned());
        let base = self.resolve_extends(table, parent, stack);
        stack.pop();
        let attributes: Map<String, Value> = match deep_merge(
            &Value::Object(attributes_of(&base)),
            &Value::Object(attributes_of(&item)),
        ) {
            Value::Object(map) => map.into_iter().filter(|(_, a)| !a.is_null()).collect(),
            _ => unreachable!("merging two maps gives a map"),
        };
        let mut merged = base.as_object().cloned().unwrap_or_default();
        for (key, value) in item.as_object().into_iter().flatten() {
            if value.is_null() {
                continue;
            }
            if key == "profiles" {
                let mut profiles = merged
                    .get(key)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for profile in value.as_array().into_iter().flatten() {
                    if !profiles.contains(profile) {
                        profiles.push(profile.clone());
                    }
                }
                merged.insert(key.clone(), Value::Array(profiles));
            } else {
                merged.insert(key.clone(), value.clone());
            }
        }
        merged.insert("attributes".to_owned(), Value::Object(attributes));
        Value::Object(merged)
    }

    /// A resolved class or object: each attribute merged over its dictionary entry.
    fn finish(&self, kind: &'static str, name: &str, data: &Value) -> Item {
        let mut attributes = BTreeMap::new();
        for (attribute_name, attribute) in attributes_of(data) {
            let dictionary = self.dictionary.get(&attribute_name).unwrap_or_else(|| {
                panic!("{kind} {name}: attribute {attribute_name} is not in dictionary.json")
            });
            let merged = deep_merge(dictionary, &attribute);
            let type_name = merged
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{kind} {name}: attribute {attribute_name} has no type"))
                .to_owned();
            let requirement = match merged.get("requirement").and_then(Value::as_str) {
                Some("required") => Requirement::Required,
                Some("recommended") => Requirement::Recommended,
                Some("optional") | None => Requirement::Optional,
                Some(other) => panic!("{kind} {name}: {attribute_name} has requirement {other}"),
            };
            let is_array = merged.get("is_array").and_then(Value::as_bool) == Some(true);
            let resolved = Attribute {
                object: !self.types.contains_key(&type_name),
                type_name,
                is_array,
                requirement,
                enum_keys: merged
                    .get("enum")
                    .and_then(Value::as_object)
                    .map(|e| e.keys().cloned().collect()),
                profile: merged
                    .get("profile")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
            // The datetime profile: a `<name>_dt` beside every timestamp.
            if dictionary.get("type").and_then(Value::as_str) == Some("timestamp_t") {
                attributes.insert(
                    format!("{attribute_name}_dt"),
                    Attribute {
                        type_name: "datetime_t".to_owned(),
                        object: false,
                        is_array,
                        requirement: Requirement::Optional,
                        enum_keys: None,
                        profile: Some("datetime".to_owned()),
                    },
                );
            }
            attributes.insert(attribute_name, resolved);
        }
        let mut constraints = Vec::new();
        for (constraint, names) in data
            .get("constraints")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let names: Vec<String> = names
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            constraints.push(match constraint.as_str() {
                "at_least_one" => Constraint::AtLeastOne(names),
                "just_one" => Constraint::JustOne(names),
                other => panic!("{kind} {name}: unknown constraint {other}"),
            });
        }
        Item {
            kind,
            name: name.to_owned(),
            attributes,
            constraints,
        }
    }
}
