//! The OpenAPI document lists every route the router serves, and the router serves
//! every route of the table with the documented method.

use axum::body::Body;
use axum::http::Method;
use port_server::ENDPOINTS;
use serde_json::Value;

use crate::support::Harness;

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "x"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_is_documented_and_served() {
    let h = Harness::memory().await;
    let doc = h
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for endpoint in ENDPOINTS {
        let operation = &paths[endpoint.path][endpoint.method.openapi_key()];
        assert!(
            operation.is_object(),
            "{} {} is not documented",
            endpoint.method.as_str(),
            endpoint.path
        );
        assert!(
            operation["responses"][endpoint.success.to_string()].is_object(),
            "{endpoint:?}"
        );
        operations += 1;

        // The router answers the documented method on the path (anything but a routing
        // 404 or a 405 proves the route exists).
        let method = Method::from_bytes(endpoint.method.as_str().as_bytes()).unwrap();
        let reply = h
            .raw(
                method,
                &concrete(endpoint.path),
                Some(&h.token),
                &[],
                Body::from("{}"),
            )
            .await;
        assert_ne!(reply.status.as_u16(), 405, "{endpoint:?}: {}", reply.body);
        let routing_miss = reply.status.as_u16() == 404
            && reply.body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("route "));
        assert!(!routing_miss, "{endpoint:?} is not routed: {}", reply.body);
    }
    let documented: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented, operations,
        "the document has operations the table does not"
    );

    // Every schema reference resolves.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let name = reference.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas.contains_key(name), "unresolved {reference}");
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    out.push(v.as_str().unwrap().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
