//! The handler of docs/handlers.md: `cargo run -p port-webhook --example create_microservice`
//! with PORT_API_URL, PORT_CLIENT_ID and PORT_CLIENT_SECRET set.

use std::time::Duration;

use port_client::PortClient;
use port_webhook::{ActionOptions, HandlerError, Invocation, Outcome, Receiver, RunContext};
use serde_json::json;

/// Creates a service: reports progress, registers the entity, links the pipeline.
async fn create_microservice(inv: Invocation, ctx: RunContext) -> Result<Outcome, HandlerError> {
    let name = inv
        .property_str("name")
        .ok_or_else(|| HandlerError::new("the `name` input is required"))?
        .to_owned();
    ctx.status_label("provisioning").await?;
    ctx.log(format!("creating {name}")).await?;

    // Your work goes here. Any error converts into a HandlerError with `?`, and
    // ends the run FAILURE with its message.
    let pipeline = format!("https://ci.example.com/pipelines/{name}");
    ctx.add_link(&pipeline).await?;
    ctx.external_run_id(format!("ci-{name}")).await?;

    // Bound to the run: it shows among the run's affected entities. Do it before
    // the run ends; an ended run refuses entity changes.
    ctx.upsert_entity(
        "microservice",
        &json!({ "identifier": name, "title": name, "properties": { "region": "eu-west-1" } }),
    )
    .await?;

    // Returning Ok ends the run SUCCESS with this summary.
    Ok(Outcome::with_summary(format!("{name} is ready")))
}

/// A synchronized action: the outcome is the HTTP answer portd stores on the run.
async fn service_status(inv: Invocation, _ctx: RunContext) -> Result<Outcome, HandlerError> {
    let name = inv.property_str("name").unwrap_or_default();
    Ok(Outcome::with_summary("looked up").response(json!({ "service": name, "healthy": true })))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // PORT_API_URL (e.g. http://127.0.0.1:3000/v1), PORT_CLIENT_ID, PORT_CLIENT_SECRET.
    let client = PortClient::from_env()?;
    // Deliveries are signed with the organization's client secret.
    let secret = std::env::var("PORT_CLIENT_SECRET")?;
    let receiver = Receiver::builder(client, secret)
        .action(
            "create_microservice",
            ActionOptions::new()
                .timeout(Duration::from_secs(15 * 60))
                .concurrency(4),
            create_microservice,
        )
        .action(
            "service_status",
            ActionOptions::new()
                .synchronized(true)
                .timeout(Duration::from_secs(20)),
            service_status,
        )
        .shutdown_grace(Duration::from_secs(60))
        .build();

    let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    receiver
        .serve_with_shutdown(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
