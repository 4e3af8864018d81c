//! What a notification says, decided from the audit trail (pure): each audit event of a
//! just-in-time request becomes at most one [`Notice`], with the event's id as the notice's id
//! (so a receiver drops a redelivered one). Then the two bodies: airlock's JSON and a Slack-compatible message whose text is escaped so that
//! no value from a request can mention, link or break out of its line.

use airlock_audit::{operation as op, AuditEvent, Outcome};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// The longest any one value is shown in a text line (longer ones end in `…`).
const MAX_VALUE_CHARS: usize = 200;

/// One notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Unique and stable: the audit event's id.
    pub id: String,
    /// One of `airlock_config::NOTICE_KINDS`.
    pub kind: &'static str,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it (`person:<id>`, `airlock`).
    pub actor: String,
    /// What it is about.
    pub subject: Subject,
    /// One line for people, unescaped (each body escapes it its own way).
    pub text: String,
}

/// What a notice is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A just-in-time access request.
    Request {
        /// Its id.
        id: String,
        /// The request as the audit event recorded it (never a secret).
        request: Value,
    },
    /// An Airflow account (a break-glass account used).
    Account {
        /// The instance.
        instance: String,
        /// The username.
        username: String,
        /// What the audit event recorded (the login window; never a secret).
        detail: Value,
    },
}

/// One value for a line: control characters become spaces, long values are cut.
fn shown(v: &str) -> String {
    let mut out: String = v
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_VALUE_CHARS)
        .collect();
    if v.chars().count() > MAX_VALUE_CHARS {
        out.push('…');
    }
    out
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(shown)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `2h`, `1h30m`, `45m`, `30s`.
pub fn span(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn time(v: &Value) -> String {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        })
        .unwrap_or_else(|| "?".into())
}

fn who(actor: &str) -> String {
    shown(actor.strip_prefix("person:").unwrap_or(actor))
}

/// A break-glass account used.
fn break_glass(e: &AuditEvent) -> Option<Notice> {
    let username = match &e.target {
        Some(airlock_audit::Target::Account { username }) => username.clone(),
        _ => return None,
    };
    let instance = e.instance.clone().unwrap_or_default();
    let detail = e.after.clone().unwrap_or(Value::Null);
    let text = format!(
        "the break-glass account {} was used on {}: it logged in between {} and {} (last login {})",
        shown(&username),
        shown(&instance),
        time(&detail["window"]["from"]),
        time(&detail["window"]["to"]),
        time(&detail["last_login"]),
    );
    Some(Notice {
        id: e.id.clone(),
        kind: "break_glass.used",
        at: e.at,
        actor: e.actor.clone(),
        subject: Subject::Account {
            instance,
            username,
            detail,
        },
        text,
    })
}

/// The notice an audit event makes, if any: succeeded changes of access requests, and the
/// use of a break-glass account.
pub fn from_event(e: &AuditEvent) -> Option<Notice> {
    if e.outcome != Outcome::Succeeded {
        return None;
    }
    if e.operation == op::BREAK_GLASS_USE {
        return break_glass(e);
    }
    let r = e.after.as_ref()?;
    let request_id = match &e.target {
        Some(airlock_audit::Target::AccessRequest { id }) => id.clone(),
        _ => return None,
    };
    let state = &r["state"];
    let state_name = state["state"].as_str().unwrap_or_default();
    let requester = shown(r["requester"].as_str().unwrap_or("?"));
    let what = format!("{} on {}", list(&r["roles"]), list(&r["instances"]));
    let reason = r["reason"]
        .as_str()
        .map(|x| format!(": {}", shown(x)))
        .unwrap_or_default();
    let actor = who(&e.actor);
    let (kind, text) = match e.operation.as_str() {
        op::ACCESS_REQUEST_CREATE => (
            "request.waiting",
            format!(
                "{requester} asks for {what} for {}{reason} (request {request_id})",
                span(r["duration_secs"].as_i64().unwrap_or(0))
            ),
        ),
        op::ACCESS_REQUEST_APPROVE if state_name == "pending" => (
            "request.waiting",
            format!(
                "{actor} approved {requester}'s request for {what}; it needs more approvals (request {request_id})"
            ),
        ),
        op::ACCESS_REQUEST_APPROVE | op::ACCESS_REQUEST_AUTO_APPROVE => {
            let by = if e.operation == op::ACCESS_REQUEST_AUTO_APPROVE {
                "its rule".to_owned()
            } else {
                actor.clone()
            };
            (
                "request.approved",
                format!(
                    "{requester} has {what} until {} (approved by {by}; request {request_id})",
                    time(&state["expires_at"])
                ),
            )
        }
        op::ACCESS_REQUEST_DENY => (
            "request.denied",
            format!(
                "{actor} denied {requester}'s request for {what}{} (request {request_id})",
                state["comment"]
                    .as_str()
                    .map(|c| format!(": {}", shown(c)))
                    .unwrap_or_default()
            ),
        ),
        op::ACCESS_REQUEST_CANCEL => (
            "request.cancelled",
            format!("{requester} withdrew the request for {what} (request {request_id})"),
        ),
        op::ACCESS_REQUEST_LAPSE => (
            "request.lapsed",
            format!(
                "nobody decided {requester}'s request for {what} in time; it lapsed (request {request_id})"
            ),
        ),
        op::ACCESS_GRANT_EXPIRING => (
            "grant.expiring",
            format!(
                "{requester}'s grant of {what} ends at {}; ask again if it is still needed (request {request_id})",
                time(&state["expires_at"])
            ),
        ),
        op::ACCESS_GRANT_EXPIRE => (
            "grant.expired",
            format!(
                "{requester}'s grant of {what} ended at {} (request {request_id})",
                time(&state["expires_at"])
            ),
        ),
        op::ACCESS_GRANT_REVOKE => {
            let by = if e.actor == airlock_audit::ACTOR_AIRLOCK {
                "airlock: they are no longer active in the directory".to_owned()
            } else {
                actor.clone()
            };
            (
                "grant.revoked",
                format!("{requester}'s grant of {what} was revoked by {by} (request {request_id})"),
            )
        }
        _ => return None,
    };
    Some(Notice {
        id: e.id.clone(),
        kind,
        at: e.at,
        actor: e.actor.clone(),
        subject: Subject::Request {
            id: request_id,
            request: r.clone(),
        },
        text,
    })
}

/// airlock's JSON body.
pub fn json_body(n: &Notice) -> Value {
    let mut body = json!({
        "id": n.id,
        "type": n.kind,
        "at": n.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "actor": n.actor,
        "text": n.text,
    });
    match &n.subject {
        Subject::Request { id, request } => {
            let mut request = request.clone();
            if let Some(obj) = request.as_object_mut() {
                obj.insert("id".into(), id.clone().into());
            }
            body["request"] = request;
        }
        Subject::Account {
            instance,
            username,
            detail,
        } => {
            body["account"] =
                json!({ "instance": instance, "username": username, "login": detail });
        }
    }
    body
}

/// Escapes text for Slack's mrkdwn: `&`, `<` and `>` (so that no value can mention
/// `<!channel>`, link `<https://…|…>` or address a user), control characters as spaces.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A Slack incoming-webhook message.
pub fn slack_body(n: &Notice) -> Value {
    json!({ "text": format!("airlock: {}", slack_escape(&n.text)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_audit::{NewEvent, Target};

    fn event(operation: &str, actor: &str, after: Value) -> AuditEvent {
        let mut e = NewEvent::new(Utc::now(), actor, operation, Outcome::Succeeded);
        e.target = Some(Target::AccessRequest { id: "r1".into() });
        e.after = Some(after);
        airlock_audit::seal(None, 1, e)
    }

    fn after(state: Value) -> Value {
        json!({"requester": "ann", "roles": ["Op"], "instances": ["prod"], "duration_secs": 5400,
               "reason": "INC-1", "approvals": [], "state": state})
    }

    #[test]
    fn each_step_of_a_request_is_one_notice_with_the_events_id() {
        let approved = json!({"state": "approved", "approved_at": "2026-12-04T10:00:00Z",
                              "expires_at": "2026-12-04T11:30:00Z", "auto": false});
        let cases = [
            (
                op::ACCESS_REQUEST_CREATE,
                json!({"state": "pending"}),
                "request.waiting",
                "ann asks for Op on prod for 1h30m: INC-1",
            ),
            (
                op::ACCESS_REQUEST_APPROVE,
                json!({"state": "pending"}),
                "request.waiting",
                "needs more approvals",
            ),
            (
                op::ACCESS_REQUEST_APPROVE,
                approved.clone(),
                "request.approved",
                "until 2026-12-04T11:30:00Z (approved by sid",
            ),
            (
                op::ACCESS_REQUEST_AUTO_APPROVE,
                approved,
                "request.approved",
                "approved by its rule",
            ),
            (
                op::ACCESS_REQUEST_DENY,
                json!({"state": "denied", "by": "sid", "comment": "no"}),
                "request.denied",
                "sid denied ann's request for Op on prod: no",
            ),
            (
                op::ACCESS_REQUEST_CANCEL,
                json!({"state": "cancelled"}),
                "request.cancelled",
                "withdrew",
            ),
            (
                op::ACCESS_REQUEST_LAPSE,
                json!({"state": "lapsed"}),
                "request.lapsed",
                "lapsed",
            ),
            (
                op::ACCESS_GRANT_EXPIRE,
                json!({"state": "expired", "expires_at": "2026-12-04T11:30:00Z"}),
                "grant.expired",
                "ended at 2026-12-04T11:30:00Z",
            ),
            (
                op::ACCESS_GRANT_REVOKE,
                json!({"state": "revoked"}),
                "grant.revoked",
                "revoked by sid",
            ),
        ];
        for (operation, state, kind, needle) in cases {
            let e = event(operation, "person:sid", after(state));
            let n = from_event(&e).expect(operation);
            assert_eq!(
                (n.kind, n.id.as_str()),
                (kind, e.id.as_str()),
                "{operation}"
            );
            assert!(n.text.contains(needle), "{operation}: {}", n.text);
            assert_eq!(json_body(&n)["request"]["id"], "r1");
        }
        let leaver = event(
            op::ACCESS_GRANT_REVOKE,
            "airlock",
            after(json!({"state": "revoked"})),
        );
        assert!(from_event(&leaver)
            .expect("notice")
            .text
            .contains("no longer active"));
    }

    #[test]
    fn other_events_and_failures_make_no_notice() {
        assert!(from_event(&event(op::ACCOUNT_CREATE, "airlock", json!({}))).is_none());
        let mut e = event(
            op::ACCESS_REQUEST_CREATE,
            "person:ann",
            after(json!({"state": "pending"})),
        );
        e.outcome = Outcome::Refused { rail: "x".into() };
        assert!(from_event(&e).is_none());
    }

    #[test]
    fn no_value_can_mention_link_or_break_the_slack_line() {
        let mut a = after(json!({"state": "pending"}));
        a["reason"] = json!("<!channel> see <https://evil.example|the runbook> & \n*approve now*");
        a["requester"] = json!("<@U123>");
        let n = from_event(&event(op::ACCESS_REQUEST_CREATE, "person:x", a)).expect("notice");
        let text = slack_body(&n)["text"].as_str().expect("text").to_owned();
        assert!(
            !text.contains('<') && !text.contains('>') && !text.contains('\n'),
            "{text}"
        );
        assert!(
            text.contains("&lt;!channel&gt;") && text.contains("&amp;"),
            "{text}"
        );
        let long = "x".repeat(5000);
        let mut a = after(json!({"state": "pending"}));
        a["reason"] = json!(long);
        let n = from_event(&event(op::ACCESS_REQUEST_CREATE, "person:x", a)).expect("notice");
        assert!(n.text.chars().count() < 400, "values are cut");
    }

    #[test]
    fn spans_read_like_durations() {
        assert_eq!(span(7200), "2h");
        assert_eq!(span(5400), "1h30m");
        assert_eq!(span(45), "45s");
        assert_eq!(span(0), "0s");
    }

    #[test]
    fn a_break_glass_use_is_one_notice_naming_the_account_and_window() {
        let mut e = NewEvent::new(
            Utc::now(),
            "airlock",
            op::BREAK_GLASS_USE,
            Outcome::Succeeded,
        );
        e.target = Some(Target::Account {
            username: "root<!channel>".into(),
        });
        e.instance = Some("prod".into());
        e.after = Some(
            json!({"window": {"from": "2026-12-04T10:00:00Z", "to": "2026-12-04T10:05:00Z"},
                              "last_login": "2026-12-04T10:03:10Z", "logins": 1, "derived": true}),
        );
        let e = airlock_audit::seal(None, 1, e);
        let n = from_event(&e).expect("a notice");
        assert_eq!((n.kind, n.id.as_str()), ("break_glass.used", e.id.as_str()));
        assert_eq!(
            n.text,
            "the break-glass account root<!channel> was used on prod: it logged in between \
             2026-12-04T10:00:00Z and 2026-12-04T10:05:00Z (last login 2026-12-04T10:03:10Z)"
        );
        let body = json_body(&n);
        assert_eq!(body["account"]["username"], "root<!channel>");
        assert_eq!(body["account"]["login"]["logins"], 1);
        assert!(!slack_body(&n).to_string().contains("<!channel>"));
        let mut login = e.clone();
        login.operation = op::ACCOUNT_LOGIN.into();
        assert_eq!(from_event(&login), None, "plain logins notify nobody");
    }
}
