//! An axum service that takes payments through a payment API: every handler shares one
//! tessera-tokio client (one token for the whole service, refreshed in the background), and
//! each payment is one `call()`: Bearer added, a 401 answered by one refetch and one retry
//! (the same `Idempotency-Key` on both, so the payment is never taken twice).
//!
//! `TOKEN_URL=https://idp.example/oauth2/token CLIENT_SECRET=… PAYMENTS_URL=https://api.example/v1/payments cargo run -p tessera-tokio --example axum_payment`

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use tessera_tokio::core::{Credentials, ProviderKind};
use tessera_tokio::reqwest::Method;
use tessera_tokio::{Client, OwnedProvider};

#[derive(Clone)]
struct App {
    tessera: Client<OwnedProvider>,
    payments_url: String,
}

/// `POST /orders/{order}/pay` with the payment's JSON: the payment API's status.
async fn pay(
    State(app): State<App>,
    Path(order): Path<String>,
    body: String,
) -> Result<String, StatusCode> {
    let request = app
        .tessera
        .request(Method::POST, &app.payments_url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", format!("order-{order}"))
        .body(body)
        .build()
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    // No token yet, refused credentials, the network: the error says which (never the
    // secret or the token).
    let response = app.tessera.call(request).await.map_err(|e| {
        eprintln!("payment {order}: {e}");
        StatusCode::BAD_GATEWAY
    })?;
    Ok(response.status().to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idp = OwnedProvider::new(ProviderKind::OAuth2, std::env::var("TOKEN_URL")?)
        .with_scope("payments");
    let credentials = Credentials::new("pos-api", &std::env::var("CLIENT_SECRET")?)?;
    let tessera = Client::new(idp, credentials)?;
    // Keeps the token fresh, so no request ever meets a due token.
    let _refresher = tessera.start_refresher();
    let app = App {
        tessera,
        payments_url: std::env::var("PAYMENTS_URL")?,
    };
    let router = Router::new()
        .route("/orders/{order}/pay", post(pay))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    axum::serve(listener, router).await?;
    Ok(())
}
