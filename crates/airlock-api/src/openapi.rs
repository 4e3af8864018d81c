//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers' annotations and the
//! views' types (utoipa), so that it cannot drift from the code; served at
//! `/api/v1/openapi.json` without authentication.

use crate::problem::Problem;
use crate::routes;
use crate::views::{
    AccessAtView, AccessRowView, AccountView, ApprovalView, AuditPage, CreateRequest, Decision,
    EvidenceView, Extension, InstanceView, MeView, PersonView, RequestView, SpanView,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The bearer scheme every route but the document itself needs.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("a JWT of the configured OpenID Connect provider, or an airlock API token (airlock_api_...)")
                    .build(),
            ),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "airlock governance API",
        version = "1",
        description = "Just-in-time access requests, approvals and grants for every Airflow airlock governs, and read access to people, accounts, instances and the audit trail. Errors are RFC 7807 problem details (application/problem+json)."
    ),
    paths(
        routes::openapi,
        routes::me,
        routes::list_requests,
        routes::create_request,
        routes::get_request,
        routes::approve,
        routes::deny,
        routes::cancel,
        routes::revoke,
        routes::extend,
        routes::grants,
        routes::people,
        routes::one_person,
        routes::instances,
        routes::accounts,
        routes::audit,
        routes::access_at,
    ),
    components(schemas(
        Problem,
        RequestView,
        ApprovalView,
        CreateRequest,
        Decision,
        Extension,
        PersonView,
        MeView,
        InstanceView,
        AccountView,
        AuditPage,
        AccessAtView,
        EvidenceView,
        SpanView,
        AccessRowView,
    )),
    modifiers(&Bearer),
    tags(
        (name = "requests", description = "Just-in-time access: ask, approve, deny, cancel, revoke, extend"),
        (name = "directory", description = "People, instances and accounts"),
        (name = "audit", description = "The hash-chained audit trail"),
        (name = "identity", description = "Who the caller is"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&document()).expect("JSON");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "{}",
            doc["openapi"]
        );
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/api/v1/me",
            "/api/v1/requests",
            "/api/v1/requests/{id}",
            "/api/v1/requests/{id}/approve",
            "/api/v1/requests/{id}/extend",
            "/api/v1/grants",
            "/api/v1/people",
            "/api/v1/instances/{name}/accounts",
            "/api/v1/audit",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["components"]["schemas"]["Problem"].is_object());
    }
}
